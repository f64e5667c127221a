"""Curvature of the mini-batch loss at ``theta_t``: Hessian/GGN diagonals and Hessian-vector products.

The user's loop runs a plain ``loss.backward()``, which yields gradients only. On a step where a
curvature quantity is due, the cockpit therefore *recomputes* the loss on the captured batch, once
per kind of work, just before the optimizer step (parameters still ``theta_t``):

- **diagonals** (HessTrace, TICDiag, TICTrace; one per ``curvature`` setting, shared by all three):
  the exact Hessian diagonal from one forward and one backward pass with BackPACK's
  ``DiagHessian`` through a *BackPACK shadow* of the model; the GGN diagonal, exact (``C`` backward
  passes for ``C`` outputs per sample) or Monte-Carlo (``mc_samples`` passes), from
  :mod:`cockpit_log.ggn` on a plain shadow, which accepts any forward code. A shadow is a
  structural copy of the model that *shares* its parameters and buffers and carries none of its
  hooks, so the user's modules never carry BackPACK's hooks and nothing is copied per step.
- **Hessian-vector products** (HessMaxEV): one forward and one ``create_graph`` backward pass through
  the user's model, then one double-backward pass per product (Pearlmutter's trick).

Neither touches what the user sees: the recompute uses ``torch.autograd.grad`` (``param.grad`` is not
written), our hooks are inert inside it, the global random-number state is saved and restored
around it (Dropout is replayed with the mask of the user's forward pass, by restoring the state saved
when that forward pass started), and Monte-Carlo samples and start vectors come from the cockpit's
own generator. The loss is the one the user backpropagates (same loss module, same reduction), so
``H_B`` is the Hessian of that loss: for ``reduction="mean"`` the mini-batch mean of eq. 1.

Cost on a tracked step: diagonals = 1 forward + 1 BackPACK backward; HessMaxEV = 1 forward +
1 backward + ``k`` Hessian-vector products (each about two backward passes). A step where no
curvature quantity is due costs nothing.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .capture import Layer
from .eigen import EigenResult, lanczos_max_eigenvalue, power_max_eigenvalue
from .errors import UnsupportedLossError
from .ggn import ggn_diagonal
from .per_sample import internal_call

__all__ = ["CURVATURE_LOSSES", "CapturedBatch", "DiagKind", "EigenSettings", "CurvatureEngine"]

#: loss modules BackPACK's second-order extensions support
CURVATURE_LOSSES: tuple[type[nn.Module], ...] = (nn.CrossEntropyLoss, nn.MSELoss, nn.BCEWithLogitsLoss)


@dataclass(frozen=True)
class DiagKind:
    """Which curvature diagonal: ``"hessian"`` (exact), ``"ggn"`` (exact GGN) or ``"ggn_mc"``."""

    kind: str = "hessian"
    mc_samples: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("hessian", "ggn", "ggn_mc"):
            raise ValueError(f"curvature must be 'hessian', 'ggn' or 'ggn_mc', got {self.kind!r}")
        if self.kind == "ggn_mc" and self.mc_samples < 1:
            raise ValueError(f"mc_samples must be >= 1, got {self.mc_samples}")
        if self.kind != "ggn_mc" and self.mc_samples != 1:
            object.__setattr__(self, "mc_samples", 1)

    def __str__(self) -> str:
        return f"ggn_mc({self.mc_samples})" if self.kind == "ggn_mc" else self.kind


@dataclass(frozen=True)
class EigenSettings:
    """HessMaxEV's solver: ``"lanczos"`` or ``"power"``, with its stopping rule."""

    method: str = "lanczos"
    max_iter: int = 100
    rtol: float = 1e-3
    atol: float = 1e-6

    def __post_init__(self) -> None:
        if self.method not in ("lanczos", "power"):
            raise ValueError(f"method must be 'lanczos' or 'power', got {self.method!r}")
        if self.max_iter < 1 or self.rtol < 0 or self.atol < 0:
            raise ValueError(f"need max_iter >= 1 and non-negative tolerances, got {self}")


@dataclass
class CapturedBatch:
    """What the loss of one step is recomputed from: the model call, the loss targets, the RNG state."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    rng_state: Tensor | None = None
    cuda_rng_states: list[Tensor] | None = None
    output: Tensor | None = None  # the model output of the captured call (identity check only)
    targets: tuple[Any, ...] | None = None
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def complete(self) -> bool:
        return self.targets is not None and self.problem is None


def _detach(x: Any) -> Any:
    return x.detach() if isinstance(x, Tensor) else x


def capture_model_call(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> CapturedBatch:
    """Record a call of the model (from its forward pre-hook), with the RNG state before it."""
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return CapturedBatch(
        args=tuple(_detach(a) for a in args),
        kwargs={k: _detach(v) for k, v in kwargs.items()},
        rng_state=torch.get_rng_state(),
        cuda_rng_states=cuda,
    )


@contextmanager
def replayed_rng(batch: CapturedBatch, seed: int | None = None) -> Iterator[None]:
    """Run with the RNG state of the captured forward pass (or ``seed``); restore the global state after."""
    devices = list(range(torch.cuda.device_count())) if batch.cuda_rng_states is not None else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        elif batch.rng_state is not None:
            torch.set_rng_state(batch.rng_state)
            if batch.cuda_rng_states is not None:
                torch.cuda.set_rng_state_all(batch.cuda_rng_states)
        yield


def check_curvature_loss(loss_fn: nn.Module) -> None:
    """Raise if BackPACK cannot compute curvature diagonals through ``loss_fn``."""
    if not isinstance(loss_fn, CURVATURE_LOSSES):
        names = ", ".join(c.__name__ for c in CURVATURE_LOSSES)
        raise UnsupportedLossError(
            f"{type(loss_fn).__name__} has no Hessian/GGN diagonal here (supported: {names}); "
            "HessTrace, TICDiag and TICTrace cannot be computed. Drop them from quantities= "
            "(HessMaxEV works with any twice-differentiable loss)."
        )
    if (
        getattr(loss_fn, "weight", None) is not None
        or getattr(loss_fn, "pos_weight", None) is not None
        or getattr(loss_fn, "ignore_index", -100) != -100
        or getattr(loss_fn, "label_smoothing", 0.0) != 0
    ):
        raise UnsupportedLossError(
            f"{type(loss_fn).__name__} with class weights, ignore_index or label smoothing is not supported by the "
            "curvature diagonals; "
            "drop HessTrace, TICDiag and TICTrace from quantities=, or use an unweighted loss."
        )


def shadow_copy(model: nn.Module) -> nn.Module:
    """A structural copy of ``model`` that shares its parameters and buffers and carries no hooks.

    Hooks are left out because they may hold arbitrary objects (ours hold the cockpit); BackPACK's
    own hooks then go on the copy only. In-place activations (``inplace=True``) become out-of-place
    in the copy, since BackPACK's backward hooks forbid modifying their outputs; the values are the
    same. The copy follows every later change of the parameters' values without any synchronisation.
    """
    memo: dict[int, Any] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    for module in model.modules():
        for attr, value in vars(module).items():
            if "_hooks" in attr and isinstance(value, dict):
                memo[id(value)] = type(value)()
    shadow = copy.deepcopy(model, memo)
    for module in shadow.modules():
        if getattr(module, "inplace", None) is True:
            module.inplace = False
    return shadow


class CurvatureEngine:
    """Recomputes the loss of a captured batch and derives curvature from it (see the module docstring)."""

    def __init__(
        self, model: nn.Module, params: Mapping[str, nn.Parameter], layers: Sequence[Layer], seed: int = 0
    ) -> None:
        self.model = model
        self.params = dict(params)
        self.layers = list(layers)
        self.generator = torch.Generator().manual_seed(seed)
        self._plain_shadow: nn.Module | None = None
        self._plain_layers: list[tuple[nn.Module, dict[str, str]]] = []
        self._shadow: nn.Module | None = None
        self._shadow_loss: nn.Module | None = None
        self._shadow_loss_source: nn.Module | None = None

    # ------------------------------------------------------------------ shared
    def _loss(self, model: nn.Module, loss_fn: nn.Module, batch: CapturedBatch) -> Tensor:
        out = model(*batch.args, **batch.kwargs)
        return loss_fn(out, *(batch.targets or ()), **batch.loss_kwargs)

    def _seed(self) -> int:
        return int(torch.randint(0, 2**62, (1,), generator=self.generator))

    # ------------------------------------------------------------------ diagonals
    def _backpack_shadow(self, loss_fn: nn.Module) -> tuple[nn.Module, nn.Module]:
        from backpack import extend

        if self._shadow is None:
            self._shadow = extend(shadow_copy(self.model))
        if self._shadow_loss is None or self._shadow_loss_source is not loss_fn:
            self._shadow_loss = extend(shadow_copy(loss_fn))
            self._shadow_loss_source = loss_fn
        return self._shadow, self._shadow_loss

    def _plain(self) -> tuple[nn.Module, list[tuple[nn.Module, dict[str, str]]]]:
        if self._plain_shadow is None:
            self._plain_shadow = shadow_copy(self.model)
            modules = dict(self._plain_shadow.named_modules(remove_duplicate=False))
            self._plain_layers = [(modules[layer.qualname], layer.names) for layer in self.layers]
        return self._plain_shadow, self._plain_layers

    def diagonals(
        self, loss_fn: nn.Module, batch: CapturedBatch, kinds: Sequence[DiagKind]
    ) -> dict[DiagKind, dict[str, Tensor]]:
        """Per-parameter curvature diagonals of the recomputed loss, one dict per requested kind."""
        check_curvature_loss(loss_fn)
        out: dict[DiagKind, dict[str, Tensor]] = {}
        with internal_call(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for kind in kinds:
                if kind.kind == "hessian":
                    out[kind] = self._hessian_diagonal(loss_fn, batch)
                else:
                    model, layers = self._plain()
                    with replayed_rng(batch):
                        diag = ggn_diagonal(
                            model,
                            layers,
                            loss_fn,
                            batch.args,
                            batch.kwargs,
                            batch.targets or (),
                            kind.mc_samples if kind.kind == "ggn_mc" else None,
                            self.generator,
                        )
                    out[kind] = {n: d for n, d in diag.items() if n in self.params}
        return out

    def _hessian_diagonal(self, loss_fn: nn.Module, batch: CapturedBatch) -> dict[str, Tensor]:
        """Exact Hessian diagonal from BackPACK's ``DiagHessian`` on the BackPACK shadow."""
        from backpack import backpack
        from backpack.extensions import DiagHessian

        model, loss_module = self._backpack_shadow(loss_fn)
        params = list(self.params.values())
        try:
            with replayed_rng(batch), backpack(DiagHessian()):
                loss = self._loss(model, loss_module, batch)
                torch.autograd.grad(loss, params, allow_unused=True)
            missing = [n for n, p in self.params.items() if not hasattr(p, "diag_h")]
            if missing:
                raise RuntimeError(f"no Hessian diagonal for {', '.join(missing)}")
            return {n: p.diag_h.detach() for n, p in self.params.items()}  # type: ignore[attr-defined]
        except Exception as err:
            raise RuntimeError(
                f"BackPACK cannot compute the exact Hessian diagonal of this model ({type(err).__name__}: {err}); "
                "it needs layers applied one after another (e.g. nn.Sequential). Use curvature='ggn' (exact GGN "
                "diagonal for any forward code; equal to the Hessian diagonal for ReLU-type networks) or "
                "curvature='ggn_mc'"
            ) from err
        finally:
            for p in params:
                if hasattr(p, "diag_h"):
                    del p.diag_h  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ Hessian-vector products
    def max_eigenvalue(
        self,
        loss_fn: Callable[..., Tensor],
        batch: CapturedBatch,
        settings: EigenSettings,
        combine: Callable[[Tensor], Tensor] | None = None,
    ) -> EigenResult:
        """``lambda_max(H_B)`` (eq. 25) of the recomputed loss from Hessian-vector products.

        ``combine`` maps each local product to the product of the global batch (data-parallel runs:
        a weighted all-reduce); a local failure is then passed on as NaNs, so that every process
        takes the same number of products, and raised after the solver stops.
        """
        params = list(self.params.values())
        shapes = [p.shape for p in params]
        sizes = [p.numel() for p in params]
        with internal_call():
            with replayed_rng(batch):
                loss = self._loss(self.model, loss_fn, batch)  # type: ignore[arg-type]
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            used = [(p, g) for p, g in zip(params, grads) if g is not None and g.requires_grad]
            if not used:
                raise RuntimeError("the loss does not depend on the parameters twice-differentiably")
            index = {id(p): i for i, (p, _) in enumerate(used)}
            used_params = [p for p, _ in used]
            used_grads = [g for _, g in used]

            def local_hvp(flat: Tensor) -> Tensor:
                pieces = [t.view(s) for t, s in zip(flat.split(sizes), shapes)]
                vecs = [pieces[i] for i, p in enumerate(params) if id(p) in index]
                prods = torch.autograd.grad(used_grads, used_params, vecs, retain_graph=True, allow_unused=True)
                by_id = {id(p): hp for p, hp in zip(used_params, prods)}
                return torch.cat(
                    [
                        (by_id.get(id(p)) if by_id.get(id(p)) is not None else torch.zeros_like(p)).reshape(-1)
                        for p in params
                    ]
                ).detach()

            failures: list[Exception] = []

            def hvp(flat: Tensor) -> Tensor:
                if combine is None:
                    return local_hvp(flat)
                try:
                    product = local_hvp(flat) if not failures else torch.full_like(flat, float("nan"))
                except Exception as err:  # noqa: BLE001 - passed on as NaN, raised below
                    failures.append(err)
                    product = torch.full_like(flat, float("nan"))
                return combine(product)

            start = torch.randn(sum(sizes), generator=self.generator, dtype=torch.float64)
            start = start.to(device=params[0].device, dtype=params[0].dtype)
            solve = lanczos_max_eigenvalue if settings.method == "lanczos" else power_max_eigenvalue
            result = solve(hvp, start, max_iter=settings.max_iter, rtol=settings.rtol, atol=settings.atol)
            if failures:
                raise failures[0]
            return result
