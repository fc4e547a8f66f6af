"""Running an explainer inside a metric: compiled when it traces, on the host when it does not.

Robustness and randomisation metrics re-run the explainer they evaluate, on perturbed inputs or
on a randomised model. They take it as a callable ``explainer(model, X, targets=...)`` returning
attributions ``(n, ...)`` or an :class:`~xaijax.core.explanation.Explanation`, and import no
explainer family. :func:`run_rows` decides once per metric call how to run it:

* if ``explainer`` traces (a JAX function of ``X``, e.g. ``jax.vmap(jax.grad(...))``), every
  row of the metric (perturbation x instance) runs in one compiled call: the perturbed inputs
  are generated, explained and scored chunk by chunk in a ``lax.map`` loop of ``batch_size``
  rows, so only one chunk of perturbed inputs and attributions exists at a time;
* otherwise (an explainer that checks its inputs on the host, as xaijax's own explainers do, or
  one that calls PyTorch) the same chunks run in a Python loop: perturbations and scores are
  still compiled, and the explainer gets one concrete chunk of rows per call.

The two paths give the same numbers (a test checks it). A metric's program is kept for its
next call with the same settings, explainer, model structure and shapes (weights, targets and
data are its arguments), so only the first call compiles; as with ``jax.jit``, a model or
explainer given as a JAX function is keyed by its identity, and arrays it closes over are
read when it is first traced.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.batching import balanced_chunk, evaluate, map_row_chunks
from xaijax.core.contract import as_float_array, call, resolve_batch_size, split_instances_by_model
from xaijax.core.explanation import Explanation
from xaijax.core.model import nnx_merge
from xaijax.core.targets import check_target_fn, resolve_targets
from xaijax.metrics.attributions import attribution_array

__all__ = [
    "Setup",
    "setup",
    "predicted_class",
    "check_explainer",
    "traced_values",
    "traceable",
    "Phase",
    "rows_runner",
    "explained_model",
    "run_rows",
    "prepare_attributions",
]


# -- the metric's inputs ---------------------------------------------------------------------------
class Setup(NamedTuple):
    """A robustness or randomisation metric's checked inputs."""

    X: np.ndarray  # (n, ...)
    single: bool
    model: Any  # core Model
    params: Any
    outputs: np.ndarray  # (n, *output_shape)
    predicted: np.ndarray  # (n,) argmax class, or zeros for a scalar output
    targets: Any  # what the explainer gets: None, a callable or (n,) ints
    batch_size: int
    model_arg: Any  # the user's model object, which the explainer gets


@functools.partial(jax.jit, static_argnames=("model", "batch_size"))
def _evaluate(model, params, X, *, batch_size):
    return evaluate(model, params, X, batch_size=batch_size)


def predicted_class(y):
    """The predicted class of model outputs ``(c, K)``; a scalar output has one class."""
    return jnp.argmax(y, axis=1) if y.ndim == 2 else jnp.zeros(y.shape[:1], jnp.int32)


def setup(f, X, explainer, targets, batch_size) -> Setup:
    """Check the arguments every metric of an explainer takes; evaluate the model on ``X``.

    The explainer's targets: the given ones, or the predicted class for a vector output.
    """
    check_explainer(explainer)
    X = as_float_array("X", X)
    X, single, model, params = split_instances_by_model(f, X)
    n = X.shape[0]
    spec = resolve_targets(targets, n, model.num_outputs)
    if spec.fn is not None:
        check_target_fn(spec.fn, jax.ShapeDtypeStruct((n,) + model.output_shape, X.dtype))
    batch_size = resolve_batch_size(batch_size, X.shape[1:], X.dtype)
    outputs = np.asarray(call(_evaluate, model, params, jnp.asarray(X), batch_size=batch_size))
    if not np.all(np.isfinite(outputs)):
        raise ValueError("f returned NaN or inf on X: the metric of such a model is meaningless")
    predicted = np.asarray(predicted_class(jnp.asarray(outputs)))
    if spec.fn is not None:
        explained = spec.fn
    elif spec.indices is not None:
        explained = np.asarray(spec.indices)
    else:  # the predicted class, as the gradient explainers and Quantus's y_batch default
        explained = predicted.astype(np.int32) if model.output_shape else None
    return Setup(X, single, model, params, outputs, predicted, explained, batch_size, f)


def check_explainer(explainer, name: str = "explainer") -> None:
    """``explainer`` must be a callable ``explainer(model, X, targets=...)``."""
    if not callable(explainer) or isinstance(explainer, Explanation):
        raise TypeError(
            f"{name} must be a callable explainer(model, X, targets=...) returning attributions "
            f"(n, ...) or an Explanation, e.g. {name}=xj.saliency; got {type(explainer).__name__}"
        )


def traced_values(out, name: str = "explainer"):
    """The attribution array of an explainer's traced result (an Explanation or an array)."""
    if isinstance(out, Explanation):
        if out.has_output_axis:
            raise ValueError(
                f"{name} returned an Explanation with an output axis ({out.output_names}): "
                "explain one output per instance (targets=...)"
            )
        return jnp.asarray(out.values)
    return jnp.asarray(out)


def traceable(explainer, model_of: Callable, params, x_spec, targets_spec) -> bool:
    """Whether ``explainer(model_of(params), X, targets=...)`` traces with abstract ``X``."""
    return _attribution_spec(explainer, model_of, params, x_spec, targets_spec) is not None


def _attribution_spec(explainer, model_of, params, x_spec, targets_spec):
    """The shape of ``explainer(model_of(params), X, targets=...)``'s attributions for abstract
    ``X``, or ``None`` when it does not trace."""
    try:
        return jax.eval_shape(
            lambda p, x, t: traced_values(explainer(model_of(p), x, targets=t)),
            params,
            x_spec,
            targets_spec,
        )
    except Exception:  # noqa: BLE001 - anything that fails to trace runs on the host instead
        return None


def prepare_attributions(a, *, normalise, absolute: bool):
    """Flattened attributions ``(rows, m)``, normalised per row, then made absolute.

    ``normalise``: ``False``; ``True`` or ``"max"`` divides each row by its largest magnitude
    (Quantus's ``normalise_by_max``, but per instance); ``"second_moment"`` divides it by the
    root of its mean square (``normalise_by_average_second_moment_estimate``, Binder et al.
    2022). An all-zero row is left as it is.
    """
    a = a.reshape(a.shape[0], -1)
    if normalise is True or normalise == "max":
        scale = jnp.max(jnp.abs(a), axis=1, keepdims=True)
    elif normalise == "second_moment":
        scale = jnp.sqrt(jnp.mean(a * a, axis=1, keepdims=True))
    else:
        scale = None
    if scale is not None:
        a = a / jnp.where(scale > 0, scale, 1.0)
    if absolute:
        a = jnp.abs(a)
    return a


class Phase(NamedTuple):
    """One pass over rows: ``x = make(rows, ops)``, ``a = explainer(model, x, targets=...)``,
    then ``score(rows, x, a (c, m), ops)``; ``targets`` is ``None``, a callable or
    ``(total,)`` ints. A later phase reads the scores of the earlier ones as
    ``ops["phases"][k]``: when only ``score`` reads them, all phases' rows run in one loop
    through one copy of the explainer (compiled once); a ``make`` that reads them gets a loop
    of its own."""

    total: int
    make: Callable
    score: Callable
    targets: Any


def run_rows(explainer, model_of: Callable, params, *, operands: Any, **kwargs):
    """``rows_runner(...)(params, operands)`` for one phase; returns ``(scores, finite)``."""
    phase = Phase(
        kwargs.pop("total"), kwargs.pop("make"), kwargs.pop("score"), kwargs.pop("targets")
    )
    (out,) = rows_runner(explainer, model_of, params, operands, [phase], **kwargs)(params, operands)
    return out


# Compiled programs of earlier metric calls, most recently used last: a metric called again with
# the same settings, explainer, model structure and shapes reuses its program instead of
# compiling it again (seconds for a CNN). Bounded, as jax.jit's own caches are.
_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_MAX_PROGRAMS = 32
# Whether phases share one loop (see _merged_program); a test compares both ways.
_MERGE_PHASES = True


def _signature(tree):
    """The structure, shapes and dtypes of a pytree of arrays (hashable)."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((np.shape(v), str(getattr(v, "dtype", type(v).__name__))) for v in leaves)


def explained_model(s: Setup) -> tuple[Callable, Any, Any]:
    """``(model_of, params, key)``: the model handed to the explainer as a function of traced
    parameters, for :func:`rows_runner`.

    An NNX module (in eval mode), an ``(apply_fn, params)`` pair or a pytree module is rebuilt
    from its parameters inside the compiled program, so the program of one call serves a later
    call with other weights; a JAX function or host callable is handed over as it is. ``key``
    identifies what ``model_of`` closes over (a :func:`rows_runner` ``cache_key`` part).
    """
    kind, fn = s.model.kind, s.model.fn
    if kind == "nnx":
        return (lambda p: nnx_merge(fn, p)), s.params, s.model
    if kind == "pair":
        return (lambda p: (fn, p)), s.params, s.model
    if kind == "pytree":
        return (lambda p: fn.rebuild(p)), s.params, s.model
    model = s.model_arg
    return (lambda _: model), None, ("callable", model)


def rows_runner(
    explainer,
    model_of: Callable,
    params,
    operands: Any,
    phases: list[Phase],
    *,
    batch_size: int,
    traced: bool | None = None,
    name: str = "explainer",
    cache_key: Any = None,
) -> Callable:
    """A function ``run(params, operands)`` running ``phases`` of rows through the explainer.

    ``params`` and ``operands`` here are examples: ``run`` is compiled once for their shapes,
    all phases in one program when the explainer traces, and may be called with others of the
    same structure (the layers of a randomised model).

    Args:
        explainer: the user's explainer.
        model_of: ``params -> model`` handed to the explainer (the model itself, or an NNX
            module merged from a randomised state).
        params: a pytree of arrays (traced), or ``None``.
        operands: the arrays the phases read (a dict when there are several phases: the
            earlier phases' scores are added as ``"phases"``).
        phases: the :class:`Phase` passes, in order.
        batch_size: rows per chunk.
        traced: force the compiled (``True``) or host (``False``) path; ``None`` decides.
        name: the explainer's argument name for messages.
        cache_key: a hashable description of everything ``model_of`` and the phases'
            ``make`` and ``score`` close over (the metric's settings, the model); with it the
            program is kept and reused by later calls with an equal key, explainer, targets
            form and operand shapes. ``None``: compiled for this call only.

    Returns:
        ``run``, returning one ``(scores, finite)`` per phase: the scores (a NumPy pytree with
        leading axis ``total``) and a bool ``(total,)`` saying whether each row's attributions
        were finite.
    """

    # Per-row targets are arguments of the program, not constants in it, so that it serves
    # other targets of the same shape.
    targets = tuple(np.asarray(ph.targets) if _per_row(ph.targets) else None for ph in phases)
    key = None
    if cache_key is not None:
        forms = tuple((ph.total, "rows" if _per_row(ph.targets) else ph.targets) for ph in phases)
        key = (cache_key, explainer, name, batch_size, traced, forms)
        key += (_signature(params), _signature(operands))
        try:
            hash(key)
        except TypeError:  # an unhashable part (e.g. an explainer object): not cached
            key = None
    if key is not None and key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
        program = _PROGRAMS[key]
    else:
        program = _program(explainer, model_of, params, operands, phases, batch_size, traced, name)
        if key is not None:
            _PROGRAMS[key] = program
            while len(_PROGRAMS) > _MAX_PROGRAMS:
                _PROGRAMS.popitem(last=False)
    return lambda p, ops: program(p, ops, targets)


def _per_row(targets) -> bool:
    """Whether a phase's targets are one per row (an array) rather than shared."""
    return isinstance(targets, (np.ndarray, jax.Array))


def _program(explainer, model_of, params, operands, phases, batch_size, traced, name):
    """``run(params, operands, targets)`` for :func:`rows_runner`."""
    chunks = [balanced_chunk(ph.total, batch_size) for ph in phases]

    def with_phases(ops, done):
        return {**ops, "phases": tuple(done)} if done else ops

    if traced is None:
        ph, chunk = phases[0], chunks[0]
        x_spec = jax.eval_shape(lambda o: ph.make(jnp.arange(chunk), o), operands)
        t_spec = jax.ShapeDtypeStruct((chunk,), np.int32) if _per_row(ph.targets) else ph.targets
        traced = traceable(explainer, model_of, params, x_spec, t_spec)

    def finish(score, rows, x, a, ops):
        a = a.reshape(a.shape[0], -1)
        return score(rows, x, a, ops), jnp.all(jnp.isfinite(a), axis=1)

    if traced and len(phases) > 1 and _MERGE_PHASES:
        merged = _merged_program(
            explainer, model_of, params, operands, phases, batch_size, name, finish, with_phases
        )
        if merged is not None:
            return merged

    if traced:

        @jax.jit
        def compiled(p, ops, targets):
            done, outs = [], []
            for ph, chunk, t in zip(phases, chunks, targets, strict=True):
                o = with_phases(ops, done)

                def one(rows, ph=ph, o=o, t=t):
                    x = ph.make(rows, o)
                    rows_t = ph.targets if t is None else t[rows]
                    out = explainer(model_of(p), x, targets=rows_t)
                    a = traced_values(out, name).astype(x.dtype)
                    return finish(ph.score, rows, x, a, o)

                outs.append(map_row_chunks(one, ph.total, chunk))
                done.append(outs[-1][0])
            return outs

        def run_traced(p, ops, targets):
            return jax.tree.map(np.asarray, call(compiled, p, ops, targets))

        return run_traced

    makes = [jax.jit(ph.make) for ph in phases]
    finishes = [jax.jit(functools.partial(finish, ph.score)) for ph in phases]

    def run_host(p, ops, targets):
        model = model_of(p)
        done, outs = [], []
        for ph, chunk, make, fin, t_all in zip(
            phases, chunks, makes, finishes, targets, strict=True
        ):
            o = with_phases(ops, done)
            pieces = []
            for start in range(0, ph.total, chunk):
                # Every chunk has the same size (the last one repeats the final row), so the
                # compiled perturbation and score run at one shape.
                rows = jnp.minimum(jnp.arange(start, start + chunk), ph.total - 1)
                x = call(make, rows, o)
                t = ph.targets if t_all is None else t_all[np.asarray(rows)]
                a = attribution_array(explainer(model, np.asarray(x), targets=t), name)
                if a.shape[0] != chunk:
                    raise ValueError(
                        f"{name} must return one attribution row per input row: it returned "
                        f"{a.shape[0]} rows for {chunk} inputs"
                    )
                out = call(fin, rows, x, jnp.asarray(a, x.dtype), o)
                pieces.append(
                    jax.tree.map(lambda v, s=start, T=ph.total: np.asarray(v)[: T - s], out)
                )
            outs.append(jax.tree.map(lambda *vs: np.concatenate(vs), *pieces))
            done.append(jax.tree.map(jnp.asarray, outs[-1][0]))
        return outs

    return run_host


def _merged_program(
    explainer, model_of, params, operands, phases, batch_size, name, finish, with_phases
):
    """``run(params, operands, targets)`` running every phase's rows through ONE copy of the
    explainer: a single chunked loop over the rows of all phases, in order, or ``None`` when the
    phases cannot share it.

    One loop rather than one per phase halves the program XLA compiles (the explainer and the
    model inside it are most of it: 2 of max-sensitivity's 3.6 s first call). The phases'
    ``make`` must not read the earlier phases' scores (their ``score`` may): the scores are
    written into per-phase buffers carried by the loop, and a phase's rows are scored after the
    earlier phases' rows of the same chunk are written, so every row it reads is ready (a
    phase's rows come after the earlier phases' rows). Every chunk is made and scored as each
    phase (the makes and scores are cheap next to the explainer) and each row keeps its own
    phase's values.
    """
    totals = [ph.total for ph in phases]
    offsets = np.cumsum([0, *totals])
    total = int(offsets[-1])
    chunk = balanced_chunk(total, batch_size)
    num_chunks = -(-total // chunk)
    per_row = [_per_row(ph.targets) for ph in phases]
    if any(per_row) and not all(per_row):
        return None
    if not any(per_row) and any(ph.targets is not phases[0].targets for ph in phases):
        return None
    rows_spec = jax.ShapeDtypeStruct((chunk,), jnp.int32)
    try:  # a make that reads the earlier phases' scores raises KeyError without "phases"
        x_specs = [jax.eval_shape(ph.make, rows_spec, operands) for ph in phases]
    except KeyError:
        return None
    if any(_signature(x) != _signature(x_specs[0]) for x in x_specs):
        return None
    x_spec = x_specs[0]
    t_spec = jax.ShapeDtypeStruct((chunk,), np.int32) if per_row[0] else phases[0].targets
    a_spec = _attribution_spec(explainer, model_of, params, x_spec, t_spec)
    if a_spec is None:
        return None
    a_spec = jax.ShapeDtypeStruct(a_spec.shape, x_spec.dtype)
    out_specs = []  # each phase's (scores, finite) for one chunk
    for ph in phases:
        o = with_phases(
            operands,
            [
                _buffer_spec(sp[0], ph_.total)
                for sp, ph_ in zip(out_specs, phases[: len(out_specs)], strict=True)
            ],
        )
        out_specs.append(
            jax.eval_shape(functools.partial(finish, ph.score), rows_spec, x_spec, a_spec, o)
        )

    @jax.jit
    def compiled(p, ops, targets):
        t_all = jnp.concatenate([jnp.asarray(t) for t in targets]) if per_row[0] else None
        # Each phase's buffer has a chunk of margin on both sides, so that a chunk's values are
        # written in one slice at rows (start - offset) + chunk, which is never clamped when
        # the chunk holds a row of the phase (a scatter of the rows costs ~10% of the metric).
        buffers = [
            jax.tree.map(
                lambda v, T=ph.total: jnp.zeros((T + 2 * chunk, *v.shape[1:]), v.dtype), sp
            )
            for sp, ph in zip(out_specs, phases, strict=True)
        ]

        def written(b, T):
            return b[chunk : chunk + T]

        def body(k, buffers):
            raw = k * chunk + jnp.arange(chunk)
            rows = jnp.minimum(raw, total - 1)
            phase = sum((rows >= int(o)).astype(jnp.int32) for o in offsets[1:-1])
            local = [
                jnp.clip(rows - int(o), 0, T - 1) for o, T in zip(offsets[:-1], totals, strict=True)
            ]
            x = phases[0].make(local[0], ops)
            for j in range(1, len(phases)):
                x_j = phases[j].make(local[j], ops)
                sel = (phase == j).reshape((chunk,) + (1,) * (x.ndim - 1))
                x = jnp.where(sel, x_j, x)
            t = phases[0].targets if t_all is None else t_all[rows]
            a = traced_values(explainer(model_of(p), x, targets=t), name).astype(x.dtype)
            buffers = list(buffers)
            for j, ph in enumerate(phases):
                earlier = [
                    jax.tree.map(lambda v, T=q.total: written(v, T), b[0])
                    for b, q in zip(buffers[:j], phases, strict=False)
                ]
                out = finish(ph.score, local[j], x, a, with_phases(ops, earlier))
                # Rows of other phases and the last chunk's repeats keep the buffer's values.
                keep = (phase == j) & (raw < total)
                start = k * chunk - int(offsets[j]) + chunk

                def put(b, v, keep=keep, start=start):
                    old = jax.lax.dynamic_slice_in_dim(b, start, chunk)
                    sel = keep.reshape((chunk,) + (1,) * (v.ndim - 1))
                    return jax.lax.dynamic_update_slice_in_dim(b, jnp.where(sel, v, old), start, 0)

                buffers[j] = jax.tree.map(put, buffers[j], out)
            return buffers

        buffers = jax.lax.fori_loop(0, num_chunks, body, buffers)
        return [
            jax.tree.map(lambda b, T=ph.total: written(b, T), buf)
            for buf, ph in zip(buffers, phases, strict=True)
        ]

    def run_traced(p, ops, targets):
        return jax.tree.map(np.asarray, call(compiled, p, ops, targets))

    return run_traced


def _buffer_spec(spec, total):
    return jax.tree.map(lambda v: jax.ShapeDtypeStruct((total, *v.shape[1:]), v.dtype), spec)
