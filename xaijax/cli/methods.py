"""The explainers ``xaijax explain`` offers, read from the registry, and how to call them.

Every registered explainer that takes rows (``inputs`` ``"tabular"`` or ``"any"``) and a model
``f(X)`` is offered: the Shapley explainers, LIME tabular, Deep SHAP and the gradient methods.
What each needs comes from its registry entry (:class:`~xaijax.core.registry.ExplainerInfo`:
its reference argument, whether it draws random numbers, whether it needs a JAX model) and its
options from its signature, so an explainer registered later is offered without touching the
command line.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from xaijax.cli.settings import CliError
from xaijax.core import contract, registry

__all__ = ["Method", "tabular_methods", "CONTRACT_KEYWORDS"]

# Keywords the command line fills itself (from its own flags) rather than as method options.
CONTRACT_KEYWORDS = ("targets", "key", "batch_size", "mesh")
# Array- or object-valued keywords (group maps, maskers) have no command-line form.
_NOT_OPTIONS = (
    *CONTRACT_KEYWORDS,
    "feature_names",
    "background_weights",
    "batched",
    "groups",
    "masker",
)


@dataclasses.dataclass(frozen=True)
class Method:
    """An explainer as the command line calls it.

    Attributes:
        name: the explainer's public name.
        fn: the explainer.
        kind: the Explanation kind it returns.
        reference: the name of its reference argument (``"background"``, ``"training_data"``)
            or ``None``.
        random: whether it takes ``key``.
        needs_jax: whether it needs a JAX model (differentiated or re-interpreted).
        options: its own keyword options and their defaults, as ``(name, default)`` pairs.
        keywords: every keyword it accepts.
    """

    name: str
    fn: Callable
    kind: str
    reference: str | None
    random: bool
    needs_jax: bool
    options: tuple[tuple[str, Any], ...]
    keywords: frozenset[str]

    @property
    def takes_weights(self) -> bool:
        """Whether its reference may be a weighted summary (a k-means :class:`Background`)."""
        return "background_weights" in self.keywords

    def call(self, f, rows, reference, *, key=None, targets=None, batch_size=None, **options):
        """``fn(f, rows, [reference], key=, targets=, batch_size=, **options)``, keywords only.

        ``targets`` and ``batch_size`` are passed only when given, ``key`` only to a random
        method, so each method applies its own defaults.
        """
        kwargs = dict(options)
        if self.random:
            kwargs["key"] = key
        if targets is not None:
            kwargs["targets"] = targets
        if batch_size is not None:
            kwargs["batch_size"] = batch_size
        args = (f, rows) if self.reference is None else (f, rows, reference)
        return self.fn(*args, **kwargs)

    def check_options(self, options: dict, *, targets=None, batch_size=None) -> dict:
        """``options`` checked against the method's; returns every option's effective value.

        Raises:
            CliError: naming the flag of an option, ``--targets`` or ``--batch-size`` that the
                method does not take.
        """
        known = dict(self.options)
        for name in options:
            if name not in known:
                listed = ", ".join(known) or "none"
                raise CliError(
                    f"{_flag(name)} does not apply to --method {self.name} (its options: {listed})"
                )
        for name, value in (("targets", targets), ("batch_size", batch_size)):
            if value is not None and name not in self.keywords:
                raise CliError(f"{_flag(name)} does not apply to --method {self.name}")
        return {**known, **options}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def tabular_methods(infos: dict[str, registry.ExplainerInfo] | None = None) -> dict[str, Method]:
    """Every registered explainer that explains rows of a table with a model ``f(X)``, by name.

    Example:
        >>> import xaijax
        >>> methods = tabular_methods()
        >>> {"kernel_shap", "lime_tabular", "saliency"} <= set(methods)
        True
        >>> methods["saliency"].needs_jax, methods["lime_tabular"].reference
        (True, 'training_data')
    """
    if infos is None:
        import xaijax  # noqa: F401  (importing the package registers every explainer)

        # ProtoPNet's and the transformers' explainers (imported on first use, with Flax) take
        # no tabular model: leaving them out keeps Flax out of a command that explains rows.
        infos = registry.explainers(deferred=False)
    methods = {}
    for name, info in sorted(infos.items()):
        if info.inputs not in ("tabular", "any") or info.model_form != "model":
            continue
        params = list(inspect.signature(info.fn).parameters.values())
        data_args = 3 if info.reference else 2
        keywords = frozenset(
            p.name
            for p in params[data_args:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
        options = tuple(
            (p.name, None if p.default is p.empty else p.default)
            for p in params[data_args:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in _NOT_OPTIONS
            and p.default is not contract.MISSING  # a deprecated alias
        )
        methods[name] = Method(
            name,
            info.fn,
            info.kind,
            info.reference,
            info.random,
            info.needs_jax,
            options,
            keywords,
        )
    return methods
