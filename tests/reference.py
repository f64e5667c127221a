"""Independent float64 references: per-sample gradients from torch.func over the whole model, and
the paper's equations in their "as written" forms (not the rearranged ones the product uses)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap


def mlp(activation: type[nn.Module] = nn.Tanh, out: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(6, 5), activation(), nn.Linear(5, 4), activation(), nn.Linear(4, out))


def cnn(out: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 2, 2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 3 * 3, out),
    )


def make_batch(kind: str, loss: str, batch: int, gen: torch.Generator, out: int = 3):
    shape = (batch, 6) if kind == "mlp" else (batch, 2, 8, 8)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    if loss == "ce":
        y = torch.randint(0, out, (batch,), generator=gen)
    else:
        y = torch.randn(batch, out, generator=gen, dtype=torch.float64)
    return x, y


def sample_loss(loss: str, reduction: str, output: torch.Tensor, target: torch.Tensor, batch: int) -> torch.Tensor:
    """l_n of one sample, with the convention mean_n l_n = the loss the user backpropagates."""
    if loss == "ce":
        base = nn.functional.cross_entropy(output, target, reduction="sum")
        return base if reduction == "mean" else batch * base
    per_elem = (output - target) ** 2
    return per_elem.mean() if reduction == "mean" else batch * per_elem.sum()


def per_sample(model: nn.Module, loss: str, reduction: str, x: torch.Tensor, y: torch.Tensor):
    """(l_n [B], g_n [B, D], names, sizes) at the model's current parameters."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    batch = x.shape[0]

    def f(p, xn, yn):
        out = functional_call(model, p, (xn.unsqueeze(0),))
        return sample_loss(loss, reduction, out, yn.unsqueeze(0), batch)

    losses = vmap(f, in_dims=(None, 0, 0))(params, x, y)
    grads = vmap(grad(f), in_dims=(None, 0, 0))(params, x, y)
    names = list(params)
    flat = torch.cat([grads[n].reshape(batch, -1) for n in names], dim=1)
    sizes = [params[n].numel() for n in names]
    return losses.detach(), flat.detach(), names, sizes


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


# ------------------------------------------------------------------ equations as written
def ref_norm_test(g: torch.Tensor) -> float:  # eq. (18a)
    b = g.shape[0]
    gb = g.mean(0)
    return math.sqrt(float(((g - gb) ** 2).sum() / (b * (b - 1) * gb.square().sum())))


def ref_inner_test(g: torch.Tensor) -> float:  # eq. (21a)
    b = g.shape[0]
    gb = g.mean(0)
    proj = g @ gb / gb.square().sum()
    return math.sqrt(float(((proj - 1) ** 2).sum() / (b * (b - 1))))


def ref_ortho_test(g: torch.Tensor) -> float:  # eq. (24a)
    b = g.shape[0]
    gb = g.mean(0)
    nb = gb.norm()
    coef = (g @ gb) / nb**2
    resid = g / nb - coef[:, None] * gb[None, :] / nb
    return math.sqrt(float(resid.square().sum() / (b * (b - 1))))


def ref_mean_gsnr(g: torch.Tensor) -> float:  # eq. (30a)-(30b), zero-variance elements left out
    gb = g.mean(0)
    denom = (g**2).mean(0) - gb**2
    keep = ((g - gb) ** 2).sum(0) > 0
    return float((gb[keep] ** 2 / denom[keep]).mean())


def ref_early_stopping(g: torch.Tensor) -> float:  # eq. (13c)
    b = g.shape[0]
    gb = g.mean(0)
    var = ((g - gb) ** 2).sum(0) / (b - 1)
    keep = var > 0
    d = int(keep.sum())
    return float(1 - b / d * (gb[keep] ** 2 / var[keep]).sum())


def ref_cabs(g: torch.Tensor, loss: float, lr: float) -> float:  # eq. (11)
    b = g.shape[0]
    return float(lr * ((g - g.mean(0)) ** 2).sum() / b / loss)


def ref_alpha(losses0, g0, losses1, g1, s) -> float:
    """Eq. (8)-(9) with positions tau in {0, 1} along theta_t + tau * s (other units than the product)."""
    l0, l1 = losses0.numpy(), losses1.numpy()
    d0, d1 = (g0 @ s).numpy(), (g1 @ s).numpy()
    fvec = np.array([l0.mean(), l1.mean(), d0.mean(), d1.mean()])
    lam = np.diag([np.var(l0, ddof=1), np.var(l1, ddof=1), np.var(d0, ddof=1), np.var(d1, ddof=1)])
    phi = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 2.0]])
    if np.any(np.diag(lam) == 0):
        return None  # eq. (9) needs Lambda invertible; exact observations are tested separately
    li = np.linalg.inv(lam)
    w = np.linalg.inv(phi @ li @ phi.T) @ phi @ li @ fvec
    if w[2] <= 0:
        return math.nan
    tau_min = -w[1] / (2 * w[2])
    return (1.0 - tau_min) / tau_min


# ---------------------------------------------------------------------- curvature references
def flat_named_params(model: nn.Module) -> tuple[torch.Tensor, list[str], list[torch.Size]]:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]), names, shapes


def unflatten(v: torch.Tensor, names: list[str], shapes: list[torch.Size]) -> dict[str, torch.Tensor]:
    sizes = [math.prod(s) for s in shapes]
    return {n: t.view(s) for n, t, s in zip(names, v.split(sizes), shapes)}


def exact_hessian(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """D x D Hessian of loss_fn(model(x), y) on the flattened parameters (torch.autograd.functional)."""
    flat, names, shapes = flat_named_params(model)

    def loss_of(v: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, unflatten(v, names, shapes), (x,)), y)

    return torch.autograd.functional.hessian(loss_of, flat)


def exact_ggn(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """J^T H_loss J by hand: J the Jacobian of all outputs, H_loss the Hessian of the loss in the outputs."""
    flat, names, shapes = flat_named_params(model)

    def outputs(v: torch.Tensor) -> torch.Tensor:
        return functional_call(model, unflatten(v, names, shapes), (x,)).reshape(-1)

    jac = torch.autograd.functional.jacobian(outputs, flat)  # [B*C, D]
    out = outputs(flat).detach()
    shape = functional_call(model, unflatten(flat, names, shapes), (x,)).shape
    h_out = torch.autograd.functional.hessian(lambda o: loss_fn(o.view(shape), y), out)  # [B*C, B*C]
    return jac.T @ h_out @ jac


def blocks(vector: torch.Tensor, names: list[str], shapes: list[torch.Size]) -> dict[str, torch.Tensor]:
    """Split a flat vector into per-parameter pieces."""
    return {n: t.reshape(-1) for n, t in unflatten(vector, names, shapes).items()}
