"""Generation targets for language models: what a layer attribution explains in an LM's output.

A decoder LM maps token ids ``(n, L)`` to next-token logits ``(n, L, V)``. Every explainer's
``targets`` accepts a callable ``fn(outputs) -> (n,)``; the helpers here build them:

* :func:`next_token_target`: ``log p(token)`` at one position;
* :func:`contrastive_target`: ``log p(a) - log p(b)`` (Yin & Neubig 2022, "why a and not b");
* :func:`generation_attribution`: a greedy continuation, then the attribution of each generated
  token to the prompt, all positions in one explainer call on the stacked prefixes.

The callables apply the same rule to every row (explainers evaluate them on chunks of rows),
so a per-row token is given through the model instead (:class:`LastTokenLogProbs`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "next_token_target",
    "contrastive_target",
    "LastTokenLogProbs",
    "greedy_continuation",
    "generation_attribution",
]


def _check_position(position) -> int:
    if isinstance(position, bool) or not isinstance(position, int | np.integer):
        raise TypeError(f"position must be an int (negative counts from the end); got {position!r}")
    return int(position)


def _check_token(name, token) -> int:
    if isinstance(token, bool) or not isinstance(token, int | np.integer) or token < 0:
        raise TypeError(f"{name} must be a token id, an int >= 0; got {token!r}")
    return int(token)


def _log_probs(outputs, position):
    if outputs.ndim != 3:
        raise ValueError(
            f"a generation target needs LM outputs of shape (n, L, V); got {outputs.shape}"
        )
    return jax.nn.log_softmax(outputs[:, position], axis=-1)


def next_token_target(token_id: int, position: int = -1) -> Callable:
    """``targets`` callable: ``log p(token_id)`` at ``position`` of ``(n, L, V)`` LM logits.

    Args:
        token_id: the explained next token.
        position: the sequence position whose next-token distribution is read (default the
            last one, which predicts the token after the prompt).

    Returns:
        ``fn(outputs (n, L, V)) -> (n,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> fn = next_token_target(1)
        >>> round(float(fn(jnp.zeros((1, 3, 4)))[0]), 4)  # log(1/4)
        -1.3863
    """
    token_id, position = _check_token("token_id", token_id), _check_position(position)

    def next_token(outputs):
        return _log_probs(outputs, position)[:, token_id]

    return next_token


def contrastive_target(a: int, b: int, position: int = -1) -> Callable:
    """``targets`` callable: ``log p(a) - log p(b)`` at ``position`` (contrastive explanation).

    Args:
        a: the fact token; b: the foil token.
        position: as :func:`next_token_target`.

    Returns:
        ``fn(outputs (n, L, V)) -> (n,)``; equal to the logit difference ``z_a - z_b``.

    References:
        Yin & Neubig 2022, Interpreting Language Models with Contrastive Explanations, EMNLP.

    Example:
        >>> import jax.numpy as jnp
        >>> fn = contrastive_target(0, 2)
        >>> float(fn(jnp.array([[[3.0, 0.0, 1.0]]]))[0])
        2.0
    """
    a, b = _check_token("a", a), _check_token("b", b)
    position = _check_position(position)

    def contrastive(outputs):
        lp = _log_probs(outputs, position)
        return lp[:, a] - lp[:, b]

    return contrastive


class LastTokenLogProbs(nnx.Module):
    """An LM read at each row's last non-padding position: ``(n, L) -> log p (n, V)``.

    Prefixes of different lengths are right-padded with ``pad_id`` (positions unchanged, and a
    causal LM's earlier positions do not see the padding), so row ``i``'s next-token
    distribution is at its own last real position; with integer ``targets`` (one generated
    token per row) every row explains its own token. The LM is the submodule ``lm``: its
    layers are ``"lm/embed"`` and so on.
    """

    def __init__(self, lm, pad_id: int = 0):
        self.lm, self.pad_id = lm, pad_id

    def __call__(self, tokens):
        logits = self.lm(tokens)
        last = jnp.maximum((tokens != self.pad_id).sum(axis=1) - 1, 0)
        picked = jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0]
        return jax.nn.log_softmax(picked, axis=-1)


def greedy_continuation(model, prompt_ids, num_new_tokens: int) -> np.ndarray:
    """The ``num_new_tokens`` greedy (argmax) tokens after ``prompt_ids (n, P)``: ``(n, T)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from xaijax.zoo import build
        >>> from xaijax.zoo.transformers import DecoderLM
        >>> lm = build(lambda rngs: DecoderLM(20, max_len=8, dim=16, depth=1, rngs=rngs))
        >>> greedy_continuation(lm, jnp.array([[1, 2, 3]]), 2).shape
        (1, 2)
    """
    tokens = np.asarray(prompt_ids, np.int32)
    new = []
    for _ in range(num_new_tokens):
        logits = np.asarray(model(jnp.asarray(tokens)))
        nxt = logits[:, -1].argmax(axis=-1).astype(np.int32)
        new.append(nxt)
        tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
    return np.stack(new, axis=1)


def generation_attribution(
    model,
    prompt_ids,
    *,
    num_new_tokens: int,
    method: Callable,
    layer: str = "embed",
    pad_id: int | None = None,
    **method_kwargs,
):
    """Attribute each greedily generated token to the prompt, all in one explainer call.

    The continuation ``g_1..g_T`` of each prompt is generated greedily; prefix ``k`` (the
    prompt and ``g_1..g_{k-1}``) is right-padded to a common length, and the ``n * T`` prefixes
    are explained in one call of ``method`` (a layer explainer such as
    ``xaijax.layer_integrated_gradients``) with the score ``log p(g_k | prefix_k)``.

    Args:
        model: a decoder LM (NNX) ``(n, L) -> (n, L, V)`` with a ``pad_id`` attribute or
            ``pad_id`` given; the prompts must not contain padding (a generated padding token
            would end its row's later prefixes early: a ``ValueError`` says so).
        prompt_ids: ``(n, P)`` or ``(P,)`` int token ids.
        num_new_tokens: ``T``, an int >= 1 (``P + T - 1 <= max_len``).
        method: the layer explainer ``method(model, layer, X, targets=..., **kw)``.
        layer: the LM's layer path (default its token embedding).
        pad_id: the padding id (default ``model.pad_id``).
        **method_kwargs: passed to ``method`` (``num_steps``, ``batch_size``, ...).

    Returns:
        ``(generated (n, T), prompt_values (n, T, P), explanation)``: the tokens, the
        attribution of generated token ``k`` to each prompt token, and the explainer's
        :class:`~xaijax.Explanation` over the ``n * T`` prefixes (row ``i * T + k``; values
        ``(n * T, P + T - 1)``, exactly 0 at padding).

    Example:
        >>> import jax.numpy as jnp, xaijax as xj
        >>> from xaijax.zoo import build
        >>> from xaijax.zoo.transformers import DecoderLM
        >>> lm = build(lambda rngs: DecoderLM(20, max_len=8, dim=16, depth=1, rngs=rngs))
        >>> g, v, _ = generation_attribution(lm, jnp.array([[1, 2, 3]]), num_new_tokens=2,
        ...                                  method=xj.layer_integrated_gradients, num_steps=4)
        >>> g.shape, v.shape
        ((1, 2), (1, 2, 3))
    """
    if isinstance(num_new_tokens, bool) or not isinstance(num_new_tokens, int | np.integer):
        raise TypeError(f"num_new_tokens must be an int >= 1; got {num_new_tokens!r}")
    if num_new_tokens < 1:
        raise ValueError(f"num_new_tokens must be >= 1; got {num_new_tokens}")
    prompts = np.asarray(prompt_ids)
    if not np.issubdtype(prompts.dtype, np.integer):
        raise TypeError(f"prompt_ids must be int token ids; got dtype {prompts.dtype}")
    prompts = prompts.astype(np.int32)
    prompts = prompts[None] if prompts.ndim == 1 else prompts
    if prompts.ndim != 2 or prompts.shape[1] == 0:
        raise ValueError(f"prompt_ids must be (n, P) with P >= 1; got shape {prompts.shape}")
    pad = getattr(model, "pad_id", None) if pad_id is None else pad_id
    if pad is None:
        raise ValueError("pad_id is needed (the model has no pad_id attribute)")
    if np.any(prompts == pad):
        raise ValueError(f"prompt_ids must not contain the padding id {pad}")
    n, P = prompts.shape
    T = int(num_new_tokens)
    generated = greedy_continuation(model, prompts, T)
    if np.any(generated[:, :-1] == pad):
        raise ValueError(
            f"the greedy continuation generated the padding id {pad} before its last token; "
            "use fewer num_new_tokens or a model that does not emit padding"
        )
    full = np.concatenate([prompts, generated], axis=1)
    width = P + T - 1
    prefixes = np.full((n, T, width), pad, np.int32)
    for k in range(T):
        prefixes[:, k, : P + k] = full[:, : P + k]
    wrapped = LastTokenLogProbs(model, pad)
    exp = method(
        wrapped,
        f"lm/{layer}",
        prefixes.reshape(n * T, width),
        targets=generated.reshape(n * T),
        pad_id=pad,
        **method_kwargs,
    )
    values = np.asarray(exp.values).reshape((n, T) + np.shape(exp.values)[1:])
    return generated, values[:, :, :P], exp
