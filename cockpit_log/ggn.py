"""The diagonal of the generalised Gauss-Newton matrix for any model the core supports.

``G = sum_n J_n^T H_n J_n`` with ``J_n`` the Jacobian of sample ``n``'s model output and ``H_n`` the
Hessian of the loss (the one the user backpropagates) in that output. With a factorisation
``H_n = S_n S_n^T`` (``K`` columns ``s_nk``), ``diag(G) = sum_n sum_k (J_n^T s_nk)^2``: ``K``
backward passes whose output gradients are the columns ``s_k``, each turned into per-sample gradients
layer by layer (:func:`cockpit_log.per_sample.layer_per_sample_grads`) and squared at once.

- exact (``K`` = outputs per sample): ``S_n`` is a square root of ``H_n`` in closed form;
- Monte-Carlo (``K`` = ``mc_samples``): ``s_n`` is the gradient of the loss at a label drawn from
  the model's own predictive distribution (or Gaussian noise for MSE), scaled by
  ``1/sqrt(mc_samples)``, so that ``E[s s^T] = H_n`` (unbiased).

For networks that are piecewise linear in each single weight (ReLU, LeakyReLU, MaxPool, linear and
convolution layers) the GGN diagonal *equals* the Hessian diagonal: the residual term
``sum (dl/df) d^2 f/d theta_j^2`` vanishes because ``f`` is piecewise linear in each ``theta_j``.

Unlike BackPACK's extensions this needs no module-by-module traversal: any forward code between
layers (``view``, ``torch.flatten``, functional activations, residual additions) is fine. It runs on
a hook-free shadow of the model (:func:`cockpit_log.curvature.shadow_copy`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .per_sample import layer_per_sample_grads

__all__ = ["GGN_LOSSES", "ggn_diagonal", "loss_hessian_factor"]

GGN_LOSSES: tuple[type[nn.Module], ...] = (nn.CrossEntropyLoss, nn.MSELoss, nn.BCEWithLogitsLoss)


def _reduction_scale(loss_fn: nn.Module, output: Tensor) -> float:
    """Factor of the per-element (MSE, BCE) or per-sample (CE) losses in the total loss."""
    if loss_fn.reduction == "sum":
        return 1.0
    if loss_fn.reduction != "mean":
        raise ValueError(f"reduction {loss_fn.reduction!r} is not supported for the GGN")
    return 1.0 / (output.shape[0] if isinstance(loss_fn, nn.CrossEntropyLoss) else output.numel())


def loss_hessian_factor(
    loss_fn: nn.Module, output: Tensor, target: Tensor, mc_samples: int | None, generator: torch.Generator
) -> Tensor:
    """Columns ``S[k]`` (shape ``[K, *output.shape]``) with ``sum_k S[k]_n S[k]_n^T = H_n`` (exactly or in expectation).

    ``mc_samples=None`` gives the exact factor; otherwise ``mc_samples`` sampled columns.
    """
    out = output.detach()
    scale = _reduction_scale(loss_fn, out)
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        if out.dim() != 2:
            raise ValueError("the GGN of CrossEntropyLoss supports outputs of shape [B, C] only")
        if loss_fn.weight is not None or loss_fn.ignore_index != -100 or loss_fn.label_smoothing != 0:
            raise ValueError("the GGN of CrossEntropyLoss supports no class weights, ignore_index or label smoothing")
        probs = out.softmax(dim=1)
        classes = probs.shape[1]
        if mc_samples is None:
            # S = diag(sqrt p) - p sqrt(p)^T: column k is sqrt(p_k) (e_k - p)
            eye = torch.eye(classes, dtype=out.dtype, device=out.device)
            cols = probs.sqrt().T.unsqueeze(2) * (eye.unsqueeze(1) - probs.unsqueeze(0))  # [C, B, C]
            return cols * math.sqrt(scale)
        draws = torch.multinomial(probs.cpu().double(), mc_samples, replacement=True, generator=generator)
        onehot = nn.functional.one_hot(draws.T.to(out.device), classes).to(out.dtype)  # [M, B, C]
        return (probs.unsqueeze(0) - onehot) * math.sqrt(scale / mc_samples)
    if isinstance(loss_fn, nn.MSELoss):
        # H_n = 2 * scale * I on the sample's outputs
        per_sample = out[0].numel()
        if mc_samples is None:
            eye = torch.eye(per_sample, dtype=out.dtype, device=out.device)
            cols = eye.unsqueeze(1).expand(per_sample, out.shape[0], per_sample)
            return cols.reshape(per_sample, *out.shape) * math.sqrt(2 * scale)
        noise = torch.randn((mc_samples, *out.shape), generator=generator, dtype=torch.float64)
        return noise.to(out.dtype).to(out.device) * math.sqrt(2 * scale / mc_samples)
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        if loss_fn.weight is not None or loss_fn.pos_weight is not None:
            raise ValueError("the GGN of BCEWithLogitsLoss supports no weight or pos_weight")
        sig = out.sigmoid()
        per_sample = out[0].numel()
        if mc_samples is None:
            diag = (sig * (1 - sig) * scale).sqrt().reshape(out.shape[0], per_sample)
            eye = torch.eye(per_sample, dtype=out.dtype, device=out.device)
            cols = eye.unsqueeze(1) * diag.unsqueeze(0)  # [K, B, K]
            return cols.reshape(per_sample, *out.shape)
        u = torch.rand((mc_samples, *out.shape), generator=generator, dtype=torch.float64).to(out.device)
        labels = (u < sig.unsqueeze(0).double()).to(out.dtype)
        return (sig.unsqueeze(0) - labels) * math.sqrt(scale / mc_samples)
    raise ValueError(f"no GGN for {type(loss_fn).__name__}; supported: CrossEntropyLoss, MSELoss, BCEWithLogitsLoss")


def ggn_diagonal(
    model: nn.Module,
    layers: Sequence[tuple[nn.Module, dict[str, str]]],
    loss_fn: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    targets: tuple[Any, ...],
    mc_samples: int | None,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """``diag(G)`` per parameter (model names) for the loss ``loss_fn(model(*args, **kwargs), *targets)``.

    ``layers`` are ``(module, {local name: model name})`` of ``model``; the caller runs this with the
    random state of the user's forward pass and outside the user's hooks.
    """
    seen: dict[int, list[tuple[tuple[Tensor, ...], Tensor]]] = {id(m): [] for m, _ in layers}

    def capture(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, Tensor) and output.requires_grad:
            seen[id(module)].append((tuple(a.detach() if isinstance(a, Tensor) else a for a in inputs), output))

    handles = [m.register_forward_hook(capture) for m, _ in layers]
    try:
        with torch.enable_grad():
            output = model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(output, Tensor):
        raise ValueError("the GGN needs a model that returns one tensor")
    for m, _ in layers:
        if len(seen[id(m)]) > 1:
            raise ValueError(f"module {type(m).__name__} is used more than once in the forward pass")
    active = [(m, names, seen[id(m)][0]) for m, names in layers if seen[id(m)]]
    if not active:
        raise ValueError("no layer with trainable parameters took part in the forward pass")
    columns = loss_hessian_factor(loss_fn, output, targets[0], mc_samples, generator)
    diag: dict[str, Tensor] = {}
    outputs = [out for _, _, (_, out) in active]
    for k in range(columns.shape[0]):
        deltas = torch.autograd.grad(output, outputs, grad_outputs=columns[k], retain_graph=True, allow_unused=True)
        for (module, names, (inputs, _)), delta in zip(active, deltas):
            if delta is None:
                continue
            grads = layer_per_sample_grads(module, inputs, delta.detach(), list(names))
            for local, full in names.items():
                sq = grads.pop(local).square().sum(0)
                diag[full] = sq if full not in diag else diag[full] + sq
    return diag
