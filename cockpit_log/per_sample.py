"""Per-sample gradients and directional slopes of one layer, from its input and output gradient.

For a layer ``y_n = f(a_n; w)`` whose output for sample ``n`` depends on sample ``n`` only, the
gradient of the loss share of sample ``n`` with respect to ``w`` is the vector-Jacobian product
``J_n^T delta_n`` (``delta_n`` = gradient of the loss with respect to ``y_n``), and its slope along
a direction ``s`` is ``delta_n^T J_n s``. ``nn.Linear`` has a closed form; every other layer goes
through ``torch.func`` (``vmap`` over ``vjp``/``jvp`` of the layer alone), except convolutions with
zero padding (one grouped weight-gradient convolution, or ``unfold``; slopes by one convolution with
the direction as weights). ``torch.func`` covers every other convolution, LayerNorm, GroupNorm,
Embedding and BatchNorm in eval mode.

Nothing here keeps state: callers get tensors of shape ``[B, *param.shape]`` and reduce them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

__all__ = [
    "conv_batch_grads",
    "internal_call",
    "is_internal_call",
    "layer_per_sample_grads",
    "layer_slopes",
    "plain_conv",
]

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


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def plain_conv(module: nn.Module, inputs: tuple[Tensor, ...]) -> bool:
    """A convolution with a closed form here: zero padding given as numbers, one input with a batch dim."""
    return (
        type(module) in _CONVS
        and len(inputs) == 1
        and isinstance(module.padding, tuple)
        and module.padding_mode == "zeros"
        and inputs[0].dim() == module.weight.dim()
    )


def _conv_grads(module: nn.Module, x: Tensor, delta: Tensor, names: list[str]) -> dict[str, Tensor]:
    """Per-sample weight gradients of a convolution: the weight gradient of one convolution with the batch
    folded into the groups (Conv2d with a small output map: ``delta_n @ unfold(x_n)^T``)."""
    w = module.weight
    batch, out_ch = delta.shape[0], w.shape[0]
    out: dict[str, Tensor] = {}
    if "weight" in names:
        spatial = delta[0].numel() // out_ch
        if type(module) is nn.Conv2d and module.groups == 1 and spatial * 8 < w[0].numel():
            cols = nn.functional.unfold(x, w.shape[2:], module.dilation, module.padding, module.stride)
            out["weight"] = torch.bmm(delta.flatten(2), cols.transpose(1, 2)).view(batch, *w.shape)
        else:
            groups = module.groups * batch
            template = w.new_empty((batch * out_ch, *w.shape[1:]))
            grad = torch.ops.aten.convolution_backward(
                delta.reshape(1, batch * out_ch, *delta.shape[2:]),
                x.reshape(1, batch * x.shape[1], *x.shape[2:]),
                template,
                None,
                list(module.stride),
                list(module.padding),
                list(module.dilation),
                False,
                [0] * (w.dim() - 2),
                groups,
                [False, True, False],
            )[1]
            out["weight"] = grad.view(batch, *w.shape)
    if "bias" in names:
        out["bias"] = delta.flatten(2).sum(2)
    return out


def conv_batch_grads(module: nn.Module, x: Tensor, delta: Tensor, names: list[str]) -> dict[str, Tensor]:
    """``sum_n J_n^T delta_n`` of a convolution (see :func:`plain_conv`): its weight-gradient convolution."""
    w = module.weight
    bias = [w.shape[0]] if "bias" in names else None
    _, gw, gb = torch.ops.aten.convolution_backward(
        delta, x, w.detach(), bias, list(module.stride), list(module.padding), list(module.dilation),
        False, [0] * (w.dim() - 2), module.groups, [False, "weight" in names, "bias" in names],
    )  # fmt: skip
    return {n: g for n, g in (("weight", gw), ("bias", gb)) if n in names}


def layer_per_sample_grads(
    module: nn.Module, inputs: tuple[Tensor, ...], delta: Tensor, names: list[str]
) -> dict[str, Tensor]:
    """Gradients of each sample's loss share with respect to the layer's parameters ``names``.

    Returns a dict ``name -> Tensor[B, *param.shape]`` (not yet scaled to ``g_n``).
    """
    if type(module) is nn.Linear and len(inputs) == 1:
        grads = _linear_grads(module, inputs[0], delta)
        return {n: grads[n] for n in names}
    if plain_conv(module, inputs):
        return _conv_grads(module, inputs[0], delta, names)
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
    if type(module) is nn.Linear and len(inputs) == 1 and "weight" in direction:
        js = nn.functional.linear(inputs[0], direction["weight"], direction.get("bias"))
    elif plain_conv(module, inputs) and "weight" in direction:
        js = module._conv_forward(inputs[0], direction["weight"], direction.get("bias"))  # linear in (w, b)
    else:
        rest = {n: p.detach() for n, p in module.named_parameters(recurse=False) if n not in direction}
        buffers = dict(module.named_buffers(recurse=False))
        names = list(direction)

        def f(*ps: Tensor) -> Tensor:
            return functional_call(module, {**dict(zip(names, ps)), **rest, **buffers}, inputs)

        with internal_call(), torch.no_grad():
            _, js = jvp(f, tuple(params[n] for n in names), tuple(direction[n] for n in names))
    return (js * delta).reshape(delta.shape[0], -1).sum(1)
