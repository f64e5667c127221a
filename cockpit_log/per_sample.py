"""Per-sample gradients and directional slopes of one layer, from its input and output gradient.

For a layer ``y_n = f(a_n; w)`` whose output for sample ``n`` depends on sample ``n`` only, the
gradient of the loss share of sample ``n`` with respect to ``w`` is the vector-Jacobian product
``J_n^T delta_n`` (``delta_n`` = gradient of the loss with respect to ``y_n``), and its slope along
a direction ``s`` is ``delta_n^T J_n s``. ``nn.Linear`` has a closed form; every other layer goes
through ``torch.func`` (``vmap`` over ``vjp``/``jvp`` of the layer alone), which also covers
convolutions, LayerNorm, GroupNorm, Embedding and BatchNorm in eval mode.

Nothing here keeps state: callers get tensors of shape ``[B, *param.shape]`` and reduce them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

__all__ = ["internal_call", "is_internal_call", "layer_per_sample_grads", "layer_slopes"]

_state = threading.local()


def is_internal_call() -> bool:
    """True while cockpit-log itself re-runs a layer (our forward hooks then do nothing)."""
    return getattr(_state, "depth", 0) > 0


@contextmanager
def internal_call() -> Iterator[None]:
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


def _linear_grads(module: nn.Linear, a: Tensor, delta: Tensor) -> dict[str, Tensor]:
    if a.dim() == 2:
        out = {"weight": delta.unsqueeze(2) * a.unsqueeze(1)}
        if module.bias is not None:
            out["bias"] = delta
    else:
        a3 = a.reshape(a.shape[0], -1, a.shape[-1])
        d3 = delta.reshape(delta.shape[0], -1, delta.shape[-1])
        out = {"weight": torch.einsum("bto,bti->boi", d3, a3)}
        if module.bias is not None:
            out["bias"] = d3.sum(1)
    return out


def layer_per_sample_grads(
    module: nn.Module, inputs: tuple[Tensor, ...], delta: Tensor, names: list[str]
) -> dict[str, Tensor]:
    """Gradients of each sample's loss share with respect to the layer's parameters ``names``.

    Returns a dict ``name -> Tensor[B, *param.shape]`` (not yet scaled to ``g_n``).
    """
    if type(module) is nn.Linear and len(inputs) == 1:
        grads = _linear_grads(module, inputs[0], delta)
        return {n: grads[n] for n in names}
    params = {n: p.detach() for n, p in module.named_parameters(recurse=False) if n in names}
    frozen = {n: p.detach() for n, p in module.named_parameters(recurse=False) if n not in names}
    buffers = dict(module.named_buffers(recurse=False))

    def share(p: dict[str, Tensor], xs: tuple[Tensor, ...], d: Tensor) -> Tensor:
        xs1 = tuple(x.unsqueeze(0) for x in xs)
        y = functional_call(module, {**p, **frozen, **buffers}, xs1)
        return (y * d.unsqueeze(0)).sum()

    with internal_call(), torch.enable_grad():
        return vmap(grad(share), in_dims=(None, 0, 0))(params, inputs, delta)


def layer_slopes(
    module: nn.Module,
    inputs: tuple[Tensor, ...],
    delta: Tensor,
    params: Mapping[str, Tensor],
    direction: Mapping[str, Tensor],
) -> Tensor:
    """``delta_n^T J_n s`` for every sample: the slope of sample n's loss share along ``s``.

    ``params`` are the parameter values the layer had in the forward pass (the Jacobian is taken
    there), ``direction`` holds ``s`` for the same parameter names. Returns ``Tensor[B]``.
    """
    if type(module) is nn.Linear and len(inputs) == 1:
        js = nn.functional.linear(inputs[0], direction["weight"], direction.get("bias"))
    else:
        rest = {n: p.detach() for n, p in module.named_parameters(recurse=False) if n not in direction}
        buffers = dict(module.named_buffers(recurse=False))
        names = list(direction)

        def f(*ps: Tensor) -> Tensor:
            return functional_call(module, {**dict(zip(names, ps)), **rest, **buffers}, inputs)

        with internal_call(), torch.no_grad():
            _, js = jvp(f, tuple(params[n] for n in names), tuple(direction[n] for n in names))
    return (js * delta).reshape(delta.shape[0], -1).sum(1)
