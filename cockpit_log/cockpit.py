"""The ``Cockpit`` handle: watches the user's loop and turns each step into records.

Data flows one way: hooks (capture) -> :class:`~cockpit_log.statistics.StepStatistics`
(computed once per step in the backward pass) -> quantities -> records -> sinks.

Timeline of step ``t`` (``t`` = optimizer steps taken so far):

1. forward: layer forward hooks register a gradient hook on each layer output, if anything is
   due at ``t``; the loss module's forward hook captures the loss and individual losses.
2. backward: each layer's gradient hook reduces its per-sample gradients at once.
3. before the optimizer step: gradients (GradNorm) and ``theta_t`` are read.
4. after the optimizer step: the update ``s = theta_{t+1} - theta_t`` is known; quantities
   compute their records, which go to the sinks; ``t`` becomes ``t + 1``.

In the automatic mode (``attach()``), 3 and 4 are the optimizer's step hooks and the loss is
found through its module hook. In the explicit mode the user marks the backward pass with
``with ck.backward(losses):`` (its exit is 3) and calls ``ck.step()`` after the update (4).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.module import register_module_forward_hook
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from .backends import GuardedSink, MemorySink, SinkSpec, make_sinks
from .backends.local import LocalSink
from .capture import Layer, check_per_sample_support, find_layers, train_mode_batchnorms
from .curvature import CapturedBatch, CurvatureEngine, capture_model_call, check_curvature_loss
from .distributed import detect_collective, needs_reduction, reduce_step, unwrap_model, weighted_sum
from .errors import CockpitError, UnsupportedLossError, WarnOnce
from .individual_losses import LossSplitter
from .moments import Moments
from .per_sample import is_internal_call
from .presets import QuantitySpec, resolve_quantities
from .quantities import Quantity
from .records import Record
from .schedules import ScheduleLike, as_schedule
from .statistics import Needs, StepStatistics

__all__ = ["Cockpit", "attach"]

LOSS_QUANTITIES = ("Loss", "Alpha", "CABS", "HessTrace", "TICDiag", "TICTrace", "HessMaxEV")
DIAGONAL_QUANTITIES = ("HessTrace", "TICDiag", "TICTrace")


class Cockpit:
    """Handle of an attached cockpit. Create it with :func:`attach`.

    Attributes:
        current_step: optimizer steps observed so far (the step the next records will carry).
        records: every record of this run when a ``"memory"`` sink is attached, else ``[]``.
        quantities: the active quantity instances.
        run_dir: the run directory of the local sink, if one is attached.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[..., Tensor] | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        sink: SinkSpec = "local",
        quantities: QuantitySpec = "economy",
        schedule: ScheduleLike = None,
        automatic: bool = True,
        exclude: Sequence[str] = (),
        sink_options: dict[str, dict[str, Any]] | None = None,
        distributed: bool | None = None,
        rank_diagnostics: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}; "
                "for several optimizers use automatic=False and call ck.step() after updating"
            )
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be a loss module or callable, got {type(loss_fn).__name__}")
        model, ddp = unwrap_model(model)
        self._collective = detect_collective(ddp, distributed)
        self._rank_diagnostics = bool(rank_diagnostics) and self._collective is not None
        self._carry: tuple[Moments, Moments] | None = None
        self.model = model
        self.automatic = automatic
        self._step = 0
        self._warn = WarnOnce()
        self._t0 = time.perf_counter()

        self.quantities: list[Quantity] = resolve_quantities(quantities)
        default = as_schedule(schedule)
        self._default_schedule = default
        self._batch_size: int | None = None
        for q in self.quantities:
            q.bind_default_schedule(default)

        excluded = tuple(exclude)
        self._params: dict[str, nn.Parameter] = {
            n: p
            for n, p in model.named_parameters()
            if p.requires_grad and not any(n == e or n.startswith(e + ".") for e in excluded)
        }
        if not self._params:
            raise CockpitError("the model has no trainable parameters left to watch")
        self._layers: list[Layer] = find_layers(model, self._params)
        self._curvature: CurvatureEngine | None = None
        if self._uses_curvature():
            self._curvature = CurvatureEngine(model, self._params, self._layers)
        if self._uses_backward():
            check_per_sample_support(model, self._layers)

        self._splitter: LossSplitter | None = None
        if isinstance(loss_fn, nn.Module):
            self._splitter = LossSplitter(loss_fn)  # raises UnsupportedLossError with the options
            if any(self._has(n) for n in DIAGONAL_QUANTITIES):
                check_curvature_loss(loss_fn)
        self._loss_callable = loss_fn
        self._loss_module = loss_fn if isinstance(loss_fn, nn.Module) else None
        self._functional_loss = loss_fn is not None and not isinstance(loss_fn, nn.Module)
        self._optimizer = optimizer

        # data-parallel: only the first process writes (the readings are those of the global batch)
        made = make_sinks(sink, sink_options) if self._writes else []
        self.sinks = [GuardedSink(s, self._warn) for s in made]
        self._memory = next((g.sink for g in self.sinks if isinstance(g.sink, MemorySink)), None)
        local = next((g.sink for g in self.sinks if isinstance(g.sink, LocalSink)), None)
        self.run_dir = local.run_dir if local is not None else None
        if local is not None:
            local.write_meta(self._meta())
        self._share_run_info()

        self._initial = {n: p.detach().clone() for n, p in self._params.items()} if self._has("Distance") else None
        self._stats: StepStatistics | None = None
        self._last_update: dict[str, Tensor] | None = None
        self._in_explicit_backward = False
        self._handles: list[Any] = []
        self._closed = False
        self._install_hooks()
        if self._functional_loss and automatic:
            self._skip_loss_quantities("loss_fn is a function, not a torch.nn loss module")

    # ------------------------------------------------------------------ public API
    @property
    def current_step(self) -> int:
        return self._step

    @property
    def records(self) -> list[Record]:
        return self._memory.records if self._memory is not None else []

    @property
    def rank(self) -> int:
        """This process's rank in a data-parallel run (0 otherwise); only rank 0 writes to sinks."""
        return self._collective.rank if self._collective is not None else 0

    @property
    def _writes(self) -> bool:
        """Whether this process computes and writes records (all but ranks > 0 of a data-parallel run)."""
        return self._collective is None or self._collective.rank == 0

    @property
    def communication(self) -> dict[str, int] | None:
        """All-reduce calls and bytes sent so far by this process (data-parallel runs; else None)."""
        if self._collective is None:
            return None
        return {"calls": self._collective.calls, "bytes": self._collective.bytes}

    @contextmanager
    def backward(
        self,
        losses: Tensor | None = None,
        reduction: str = "mean",
        grad_scale: float = 1.0,
        *,
        batch: tuple[Any, Any] | None = None,
    ) -> Iterator[None]:
        """Mark the backward pass of one step (explicit API, ``attach(..., automatic=False)``).

        Args:
            losses: the individual losses of the batch, shape ``[B]``; the loss you backpropagate
                is their mean (``reduction="mean"``) or sum (``"sum"``), times ``grad_scale``.
                Without them, Loss, Alpha and CABS are skipped.
            reduction: how the backpropagated loss is formed from ``losses``.
            grad_scale: factor the loss was multiplied by before backward (AMP's
                ``scaler.get_scale()``); per-sample gradients are divided by it.
            batch: ``(inputs, targets)`` of this step, needed by the curvature quantities
                (HessTrace, TICDiag, TICTrace, HessMaxEV), which recompute
                ``loss_fn(model(*inputs), *targets)`` with the ``loss_fn`` given to ``attach``
                (a tensor stands for a one-element tuple). Without it they are NaN.

        Only backward passes inside this block feed the per-sample instruments; with gradient
        accumulation, put it around one micro-batch's backward.
        """
        if self.automatic:
            raise CockpitError("ck.backward() is the explicit API; attach with automatic=False to use it")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if not grad_scale > 0:
            raise ValueError(f"grad_scale must be positive, got {grad_scale!r}")
        stats = self._ensure_stats()
        stats.grad_scale = float(grad_scale)
        if batch is not None and stats.needs.curvature:
            inputs, targets = batch
            captured = stats.batch or CapturedBatch()
            captured.args = tuple(_detach_all(inputs if isinstance(inputs, tuple) else (inputs,)))
            captured.kwargs = {}
            captured.targets = tuple(_detach_all(targets if isinstance(targets, tuple) else (targets,)))
            captured.problem = None
            stats.batch = captured
        if losses is not None:
            losses = losses.detach().reshape(-1)
            batch = losses.shape[0]
            stats.individual_losses = losses * batch if reduction == "sum" else losses
            stats.loss = stats.individual_losses.mean()
        self._in_explicit_backward = True
        try:
            yield
        finally:
            self._in_explicit_backward = False
        self._before_update(read_grads=False)

    def step(self) -> None:
        """Mark the end of an optimizer step (explicit API): parameters now hold ``theta_{t+1}``."""
        if self.automatic:
            raise CockpitError("ck.step() is the explicit API; attach with automatic=False to use it")
        stats = self._ensure_stats()
        if not stats.params_before and stats.needs.params_before:
            self._before_update(read_grads=False)
        self._read_grads(stats)
        self._after_update()

    def detach(self) -> None:
        """Remove every hook cockpit-log installed; the model and optimizer are as before attach."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def close(self) -> None:
        """Detach, then deliver pending records and close the sinks. Safe to call twice."""
        if self._closed:
            return
        self.detach()
        for s in self.sinks:
            s.close()
        self._closed = True

    def __enter__(self) -> Cockpit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Cockpit(step={self._step}, quantities={[q.name for q in self.quantities]}, "
            f"sinks={[s.name for s in self.sinks]}, automatic={self.automatic})"
        )

    # ------------------------------------------------------------------ set-up
    def _has(self, name: str) -> bool:
        return any(q.name == name for q in self.quantities)

    def _probe_needs(self) -> Needs:
        probe = Needs()
        for q in self.quantities:
            probe = probe | q.needs_at(0) | (q.needs_as_end(1) if q.two_step else Needs())
        return probe

    def _uses_backward(self) -> bool:
        probe = self._probe_needs()
        return probe.any_backward or probe.curvature

    def _uses_curvature(self) -> bool:
        return self._probe_needs().curvature

    def _meta(self) -> dict[str, Any]:
        return {
            "cockpit_log_version": _version(),
            "torch_version": torch.__version__,
            "quantities": [repr(q) for q in self.quantities],
            "model": type(self.model).__name__,
            "num_params": sum(p.numel() for p in self._params.values()),
            "params": list(self._params),
            "automatic": self.automatic,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "schedule": repr(self._default_schedule),
            "optimizer": type(self._optimizer).__name__ if self._optimizer is not None else None,
            "lr": self._learning_rate(),
            "batch_size": self._batch_size,
            "world_size": self._collective.world_size if self._collective is not None else 1,
        }

    # Run settings for sinks that store them (tracker params): at attach, and again after step 0,
    # when a discovered optimizer and the batch size are known.
    def _share_run_info(self) -> None:
        sinks = [g.sink for g in self.sinks if hasattr(g.sink, "set_run_info")]
        if not sinks:
            return
        meta = self._meta()
        for s in sinks:
            try:
                s.set_run_info(meta)
            except Exception as err:  # noqa: BLE001 - settings must not stop training
                self._warn(f"run-info-{id(s)}", f"cockpit-log: {type(s).__name__}.set_run_info failed: {err}")

    def _learning_rate(self) -> float | None:
        if self._optimizer is None or not self._optimizer.param_groups:
            return None
        lr = self._optimizer.param_groups[0].get("lr")
        return float(lr) if isinstance(lr, int | float) else None

    def _install_hooks(self) -> None:
        for layer in self._layers:
            self._handles.append(layer.module.register_forward_hook(self._layer_forward_hook(layer)))
        if self._curvature is not None:
            self._handles.append(self.model.register_forward_pre_hook(self._on_model_call, with_kwargs=True))
            self._handles.append(self.model.register_forward_hook(self._on_model_output))
        if not self.automatic:
            return
        if self._loss_module is not None:
            self._handles.append(self._loss_module.register_forward_hook(self._on_loss))
        elif not self._functional_loss:
            handle = register_module_forward_hook(self._discover_loss)
            handle._cockpit_global_loss = True  # type: ignore[attr-defined]
            self._handles.append(handle)
        if self._optimizer is not None:
            self._handles.append(self._optimizer.register_step_pre_hook(self._on_pre_step))
            self._handles.append(self._optimizer.register_step_post_hook(self._on_post_step))
        else:
            self._handles.append(register_optimizer_step_pre_hook(self._discover_pre_step))
            self._handles.append(register_optimizer_step_post_hook(self._discover_post_step))

    def _skip_loss_quantities(self, why: str, names: Sequence[str] = LOSS_QUANTITIES) -> None:
        skipped = [q.name for q in self.quantities if q.name in names]
        if not skipped:
            return
        self.quantities = [q for q in self.quantities if q.name not in names]
        self._warn(
            f"skip-loss-{','.join(skipped)}",
            f"cockpit-log: {', '.join(skipped)} need the loss module and are skipped: {why}. Fix: pass the "
            "loss as a torch.nn module, attach(model, nn.CrossEntropyLoss(), ...), or use the explicit API "
            "(automatic=False, `with ck.backward(losses=...)`).",
        )

    # ------------------------------------------------------------------ per-step state
    def _ensure_stats(self) -> StepStatistics:
        stats = self._stats
        if stats is None or stats.step != self._step:
            needs = Needs()
            for q in self.quantities:
                needs = needs | q.needs(self._step)
            if self._collective is not None and needs.sample_dots:
                needs = needs | Needs(keep_layer_io=True)  # dots with the averaged g_B, after backward
            stats = StepStatistics(step=self._step, needs=needs, initial_params=self._initial)
            stats.distributed = self._collective is not None
            if needs.end_slopes:
                stats.end_direction = self._last_update
            self._stats = stats
        return stats

    def _active(self) -> bool:
        return torch.is_grad_enabled() and not is_internal_call() and not self._closed

    def _layer_forward_hook(self, layer: Layer) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not self._active():
                return
            stats = self._ensure_stats()
            if not stats.needs.any_backward:
                return
            if not isinstance(output, Tensor) or not output.requires_grad:
                return
            if train_mode_batchnorms(module):
                stats.problem = f"BatchNorm {layer.qualname!r} is in training mode"
                return
            inputs = tuple(a.detach() if isinstance(a, Tensor) else a for a in args)
            output.register_hook(lambda delta: self._on_layer_grad(stats, layer, inputs, delta))

        return hook

    def _on_layer_grad(self, stats: StepStatistics, layer: Layer, inputs: tuple[Any, ...], delta: Tensor) -> None:
        if not self.automatic and not self._in_explicit_backward:
            return
        try:
            stats.add_layer(layer.module, inputs, delta.detach(), layer.names)
        except Exception as err:  # noqa: BLE001 - never break the user's backward pass
            stats.problem = f"per-sample gradients of {layer.qualname!r} failed: {type(err).__name__}: {err}"
            self._warn(f"layer-{layer.qualname}", f"cockpit-log: {stats.problem}; its instruments are NaN this step")

    def _on_model_call(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not self._active():
            return
        stats = self._ensure_stats()
        if stats.needs.curvature:
            stats.batch = capture_model_call(args, kwargs)

    def _on_model_output(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._active():
            return
        stats = self._ensure_stats()
        if stats.needs.curvature and stats.batch is not None:
            stats.batch.output = output if isinstance(output, Tensor) else None

    def _on_loss(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._active() or not isinstance(output, Tensor) or output.dim() != 0:
            return
        stats = self._ensure_stats()
        stats.loss = output.detach()
        if stats.needs.curvature and stats.batch is not None:
            if args and _same_tensor(args[0], stats.batch.output):
                stats.batch.targets = tuple(_detach_all(args[1:]))
            else:
                stats.batch.problem = (
                    "the loss was not computed directly from the model's output (e.g. a reshape in between), "
                    "so the curvature recompute cannot replay it; use the explicit API with "
                    "ck.backward(..., batch=(inputs, targets))"
                )
        if stats.needs.losses and self._splitter is not None:
            try:
                stats.individual_losses = self._splitter.individual_losses(args, output)
            except Exception as err:  # noqa: BLE001
                self._warn("split", f"cockpit-log: individual losses of {self._splitter.name} failed: {err}")

    def _discover_loss(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not isinstance(module, nn.modules.loss._Loss) or not self._active():
            return
        if not (args and isinstance(args[0], Tensor) and args[0].requires_grad):
            return
        try:
            self._splitter = LossSplitter(module)
        except UnsupportedLossError as err:
            self._skip_loss_quantities(str(err))
        if any(self._has(n) for n in DIAGONAL_QUANTITIES):
            try:
                check_curvature_loss(module)
            except UnsupportedLossError as err:
                self._skip_loss_quantities(str(err), DIAGONAL_QUANTITIES)
        self._loss_module = module
        # replace the global hook by one on the module found
        for h in list(self._handles):
            if getattr(h, "_cockpit_global_loss", False):
                h.remove()
                self._handles.remove(h)
        self._handles.append(module.register_forward_hook(self._on_loss))
        self._on_loss(module, args, output)

    def _owns(self, optimizer: torch.optim.Optimizer) -> bool:
        ids = {id(p) for p in self._params.values()}
        return any(id(p) in ids for g in optimizer.param_groups for p in g["params"])

    def _discover_pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._optimizer is None and self._owns(optimizer):
            self._optimizer = optimizer
        if optimizer is self._optimizer:
            self._on_pre_step(optimizer, args, kwargs)

    def _discover_post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if optimizer is self._optimizer:
            self._on_post_step(optimizer, args, kwargs)

    # ------------------------------------------------------------------ update
    def _on_pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        self._before_update(read_grads=True)

    def _on_post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        self._after_update()

    def _read_grads(self, stats: StepStatistics) -> None:
        if stats.needs.batch_grad and not stats.grad_norms:
            stats.grad_norms = {
                n: torch.linalg.vector_norm(p.grad.detach()) for n, p in self._params.items() if p.grad is not None
            }
        if self._optimizer is not None and self._optimizer.param_groups:
            lr = self._optimizer.param_groups[0].get("lr")
            stats.learning_rate = float(lr) if lr is not None else None

    def _before_update(self, read_grads: bool) -> None:
        stats = self._ensure_stats()
        if read_grads:
            self._read_grads(stats)
        if stats.needs.params_before:
            stats.params_before = {n: p.detach().clone() for n, p in self._params.items()}
        if stats.totals is not None or stats.curvature_problems:
            return  # already done (explicit API: backward exit, then step)
        if self._collective is not None and needs_reduction(stats):
            self._reduce_across_processes(stats)
        elif stats.needs.curvature and not stats.diagonals and stats.eigen is None:
            self._compute_curvature(stats)

    def _reduce_across_processes(self, stats: StepStatistics) -> None:
        """Data-parallel step: local diagonals, one all-reduce of every sum, then HessMaxEV on reduced products."""
        collective = self._collective
        assert collective is not None
        if stats.needs.diagonals:
            self._compute_curvature(stats, eigen=False, keep_batch=True)
        grads = {
            n: (p.grad.detach() / stats.grad_scale if p.grad is not None else torch.zeros_like(p))
            for n, p in self._params.items()
        }
        problem = self._curvature_problem(stats) if stats.needs.max_ev is not None else None
        if problem:
            stats.curvature_problems.setdefault("eigen", problem)
        diagnostics = None
        if self._rank_diagnostics:
            diagnostics = {
                "BatchSize": float(stats.batch_size or 0),
                "Loss": float(stats.loss) if stats.loss is not None else float("nan"),
                "Time": time.perf_counter() - self._t0,
            }
        try:
            ranks = reduce_step(stats, collective, self._params, grads, self._carry, diagnostics)
        finally:
            self._carry = None
        stats.rank_values = ranks
        totals = stats.totals
        if stats.needs.max_ev is not None and "eigen" not in stats.curvature_problems and not stats.skip_reason:
            weight = totals.local_batch / totals.batch_size if totals is not None and totals.batch_size else 0.0
            self._compute_curvature(stats, diagonals=False, combine=weighted_sum(collective, weight))
        stats.batch = None

    def _curvature_problem(self, stats: StepStatistics) -> str | None:
        batch = stats.batch
        loss_fn = self._loss_module if self._loss_module is not None else self._loss_callable
        if self._curvature is None:
            return "no curvature engine"
        if batch is None or batch.problem or batch.targets is None:
            return (batch.problem if batch is not None else None) or (
                "the batch of this step was not captured (no loss module call seen after the model call; "
                "with the explicit API pass ck.backward(..., batch=(inputs, targets)))"
            )
        if loss_fn is None:
            return "no loss function is known to recompute the loss"
        return None

    def _compute_curvature(
        self,
        stats: StepStatistics,
        diagonals: bool = True,
        eigen: bool = True,
        keep_batch: bool = False,
        combine: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        """Hessian/GGN diagonals and HessMaxEV of this step, from the recomputed loss (parameters theta_t).

        ``diagonals``/``eigen`` select the parts; ``combine`` reduces HessMaxEV's products across
        processes; ``keep_batch`` keeps the captured batch for a later part.
        """
        engine = self._curvature
        batch = stats.batch
        loss_fn = self._loss_module if self._loss_module is not None else self._loss_callable
        problem = self._curvature_problem(stats)
        if problem:
            if diagonals:
                stats.curvature_problems["diagonals"] = problem
            if eigen:
                stats.curvature_problems["eigen"] = problem
            return
        assert engine is not None and batch is not None and loss_fn is not None
        jobs: list[tuple[str, Callable[[], None]]] = []
        if stats.needs.diagonals and diagonals:
            kinds = sorted(stats.needs.diagonals, key=str)

            def diagonals() -> None:
                if not isinstance(loss_fn, nn.Module):
                    raise UnsupportedLossError("curvature diagonals need the loss as a torch.nn module")
                stats.diagonals = engine.diagonals(loss_fn, batch, kinds)

            jobs.append(("diagonals", diagonals))
        if stats.needs.max_ev is not None and eigen:
            settings = stats.needs.max_ev

            def max_ev() -> None:
                stats.eigen = engine.max_eigenvalue(loss_fn, batch, settings, combine)

            jobs.append(("eigen", max_ev))
        for key, job in jobs:
            try:
                job()
            except Exception as err:  # noqa: BLE001 - a failed reading must not stop training
                stats.curvature_problems[key] = f"curvature ({key}) failed: {type(err).__name__}: {err}"
                self._warn(f"curv-{key}", f"cockpit-log: {stats.curvature_problems[key]}; the readings are NaN")
        if not keep_batch:
            stats.batch = None

    def _after_update(self) -> None:
        stats = self._ensure_stats()
        step = stats.step
        if stats.params_before:
            stats.update = {n: p.detach() - stats.params_before[n] for n, p in self._params.items()}
        stats.elapsed = time.perf_counter() - self._t0
        starts_two_step = any(q.two_step and q.is_due(step) for q in self.quantities)
        if stats.needs.keep_layer_io and stats.update and starts_two_step:
            try:
                stats.start_slopes_value = stats.start_slopes(stats.update)
            except Exception as err:  # noqa: BLE001
                stats.problem = f"slopes along the update failed: {type(err).__name__}: {err}"
                self._warn("slopes", f"cockpit-log: {stats.problem}")
        stats.layer_io.clear()
        if self.automatic and stats.needs.losses and stats.loss is None and self._splitter is None:
            self._skip_loss_quantities("no torch.nn loss module was seen at step 0")
        records: list[Record] = []
        if self._collective is not None:
            self._carry = None
            if starts_two_step and stats.totals is not None and not stats.skip_reason:
                losses = stats.individual_losses
                slopes = stats.start_slope_moments()
                if losses is not None and slopes is not None:
                    self._carry = (Moments.of(losses), slopes)  # local; reduced with the next step
            if stats.skip_reason:
                self._warn("skip-uneven", f"cockpit-log: step {step} skipped: {stats.skip_reason}")
        writes = self._writes
        for q in self.quantities:
            if stats.skip_reason or not writes:
                break
            if q.is_due(step) or (q.two_step and q.is_due(step - 1)):
                try:
                    records.extend(q.compute(stats))
                except Exception as err:  # noqa: BLE001 - a broken reading must not stop training
                    self._warn(
                        f"q-{q.name}", f"cockpit-log: {q.name} failed at step {step}: {type(err).__name__}: {err}"
                    )
        if self._rank_diagnostics and writes and stats.rank_values and not stats.skip_reason:
            for key, values in stats.rank_values.items():
                records.extend(Record(step, f"rank{k}/{key}", float(v)) for k, v in enumerate(values))
        self._report_problems(records)
        self._last_update = stats.update if any(q.two_step and q.is_due(step) for q in self.quantities) else None
        self._stats = None
        self._step += 1
        if step == 0:
            losses = stats.individual_losses
            self._batch_size = stats.batch_size or (int(losses.shape[0]) if losses is not None else None)
            self._share_run_info()
        if records:
            for s in self.sinks:
                s.write(records)

    def _report_problems(self, records: list[Record]) -> None:
        for r in records:
            if isinstance(r.value, float) and r.value != r.value and r.reason:
                self._warn(
                    f"nan-{r.quantity}-{r.reason}", f"cockpit-log: {r.quantity} is NaN at step {r.step}: {r.reason}"
                )
            elif isinstance(r.value, float) and r.value in (float("inf"), float("-inf")):
                self._warn(
                    f"inf-{r.quantity}",
                    f"cockpit-log: {r.quantity} is infinite at step {r.step} (non-finite gradients?)",
                )


def attach(
    model: nn.Module,
    loss_fn: Callable[..., Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    sink: SinkSpec = "local",
    quantities: QuantitySpec = "economy",
    schedule: ScheduleLike = None,
    automatic: bool = True,
    exclude: Sequence[str] = (),
    sink_options: dict[str, dict[str, Any]] | None = None,
    distributed: bool | None = None,
    rank_diagnostics: bool = False,
) -> Cockpit:
    """Attach the cockpit's instruments to a model; the training loop stays as it is.

    Args:
        model: the network. Its layers get forward hooks; nothing else changes.
        loss_fn: the ``torch.nn`` loss module the loop calls. ``None``: the first ``torch.nn`` loss
            module applied to a tensor requiring grad is used (found at step 0). A plain function
            works too, but Loss, Alpha and CABS are then skipped (they need individual losses).
        optimizer: the ``torch.optim`` optimizer. ``None``: the first optimizer that steps any of
            the model's parameters is used (found at step 0).
        sink: ``"local"`` (default), ``"memory"``, another installed sink name, a sink object, or a
            list of them.
        quantities: a preset (``"economy"``), quantity names or instances, or a list of them.
        schedule: default track schedule: an int k (every k steps), a list of steps, or a callable
            ``step -> bool`` (see :mod:`cockpit_log.schedules`). Default: every step.
        automatic: ``False`` for the explicit API (``ck.backward(...)`` and ``ck.step()``).
        exclude: parameter or module names to leave out of every quantity.
        sink_options: keyword arguments per sink name, e.g. ``{"local": {"run_dir": "runs/a"}}``.
        distributed: data-parallel reading of the global batch (:mod:`cockpit_log.distributed`).
            ``None`` (default): on when ``model`` is a ``DistributedDataParallel`` model whose
            process group has more than one process; ``True``: also for loops that average
            gradients themselves (default process group); ``False``: each process reads its own
            local batch. In a data-parallel run only rank 0 creates and writes sinks.
        rank_diagnostics: data-parallel runs: rank 0 also writes each process's local ``Loss``,
            ``BatchSize`` and ``Time`` as ``rank<k>/Loss`` etc. (gathered in the same all-reduce).

    Returns:
        The :class:`Cockpit` handle; call ``close()`` at the end (or use it as a context manager).

    Raises:
        UnsupportedModelError: a module makes per-sample gradients undefined (BatchNorm in
            training mode) or unobservable; the message names it and the options.
        UnsupportedLossError: ``loss_fn`` cannot be split into individual losses.
    """
    return Cockpit(
        model,
        loss_fn,
        optimizer,
        sink=sink,
        quantities=quantities,
        schedule=schedule,
        automatic=automatic,
        exclude=exclude,
        sink_options=sink_options,
        distributed=distributed,
        rank_diagnostics=rank_diagnostics,
    )


def _same_tensor(a: Any, b: Any) -> bool:
    """``a`` is ``b``, or an alias of it (DDP may pass the model output through an identity function)."""
    if a is b:
        return True
    return (
        isinstance(a, Tensor)
        and isinstance(b, Tensor)
        and a.shape == b.shape
        and a.data_ptr() == b.data_ptr()
        and a.stride() == b.stride()
    )


def _detach_all(items: Sequence[Any]) -> list[Any]:
    return [x.detach() if isinstance(x, Tensor) else x for x in items]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("cockpit-log")
    except Exception:  # noqa: BLE001
        return "unknown"
