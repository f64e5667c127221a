"""Individual losses ``l_n``, and the one scaling convention every quantity follows.

**Scaling convention.** Let ``L`` be the loss the user backpropagates and ``B`` the batch size.
cockpit-log writes it as a mean of individual losses, ``L = (1/B) sum_n l_n`` (paper, eq. 1), and
defines the individual gradients as ``g_n = grad l_n`` (eq. 2), so that their mean ``g_B`` is the
gradient of ``L`` itself. For ``reduction="mean"`` the ``l_n`` are the usual per-sample losses
(for losses over several outputs per sample, e.g. ``MSELoss`` on ``B x K`` targets, the mean over
that sample's outputs). For ``reduction="sum"`` they are ``B`` times the per-sample losses.

Hence ``Loss`` and ``GradNorm`` equal what the user sees for either reduction; the ratios
(NormTest, InnerTest, OrthoTest, MeanGSNR, EarlyStopping, Alpha) do not depend on the reduction
at all; and CABS (eq. 11) with the optimizer's learning rate stays consistent, since a ``sum``
loss is the mean loss with a learning rate ``B`` times larger. Per-sample gradients observed
during backward are the gradients of sample ``n``'s *share* of ``L``; they are multiplied by ``B``
(:func:`share_scale`) in one place, :mod:`cockpit_log.statistics`.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .errors import UnsupportedLossError

__all__ = ["SUPPORTED_LOSSES", "LossSplitter", "share_scale"]

SUPPORTED_LOSSES: tuple[type[nn.Module], ...] = (
    nn.CrossEntropyLoss,
    nn.NLLLoss,
    nn.MSELoss,
    nn.L1Loss,
    nn.SmoothL1Loss,
    nn.HuberLoss,
    nn.BCELoss,
    nn.BCEWithLogitsLoss,
    nn.KLDivLoss,
    nn.PoissonNLLLoss,
)


def share_scale(batch_size: int) -> float:
    """Factor turning the gradient of sample n's share of ``L`` into ``g_n`` (= ``B``)."""
    return float(batch_size)


class LossSplitter:
    """Splits the value of a ``torch.nn`` loss module into individual losses ``l_n``.

    Raises:
        UnsupportedLossError: for loss classes or settings whose value is not a sum over samples.
    """

    def __init__(self, loss_module: nn.Module) -> None:
        if not isinstance(loss_module, SUPPORTED_LOSSES):
            raise UnsupportedLossError(
                f"loss function {type(loss_module).__name__} is not supported for individual losses "
                f"(supported: {', '.join(c.__name__ for c in SUPPORTED_LOSSES)}). Use the explicit API, "
                "`with ck.backward(losses=...)`, passing the individual losses yourself, or choose "
                "quantities that need none (GradNorm, Distance, UpdateSize, NormTest, InnerTest, "
                "OrthoTest, GradHist1d, MeanGSNR, EarlyStopping, Time)."
            )
        reduction = getattr(loss_module, "reduction", "mean")
        if reduction not in ("mean", "sum", "batchmean"):
            raise UnsupportedLossError(
                f"{type(loss_module).__name__}(reduction={reduction!r}): the cockpit cannot tell how the loss "
                "you backpropagate is formed from its output. Use reduction='mean' or 'sum', or the explicit "
                "API `with ck.backward(losses=..., reduction=...)`."
            )
        if isinstance(loss_module, (nn.CrossEntropyLoss, nn.NLLLoss)) and reduction == "mean":
            self._weight = loss_module.weight
            self._ignore_index = loss_module.ignore_index
        else:
            self._weight = None
            self._ignore_index = None
        self.reduction = reduction
        self.name = type(loss_module).__name__
        self._none = copy.copy(loss_module)
        self._none.reduction = "none"

    @torch.no_grad()
    def shares(self, inputs: tuple[Tensor, ...], loss: Tensor) -> Tensor:
        """Sample n's share ``lambda_n`` of the loss value, with ``sum_n lambda_n = loss``."""
        per_elem = self._none(*(t.detach() for t in inputs))
        batch = per_elem.shape[0] if per_elem.dim() > 0 else 1
        per_sample = per_elem.reshape(batch, -1).sum(1)
        if self.reduction == "sum":
            shares = per_sample
        elif self.reduction == "batchmean":
            shares = per_sample / batch
        elif self._weight is not None or self._ignore_index is not None:
            target = inputs[1]
            if target.dtype.is_floating_point:  # class probabilities: plain mean over samples
                shares = per_sample / per_elem.numel()
            else:
                valid = target != self._ignore_index
                w = self._weight[target.clamp(min=0)] if self._weight is not None else torch.ones_like(per_elem)
                denom = (w * valid).sum()
                shares = per_sample / denom
        else:
            shares = per_sample / per_elem.numel()
        return shares

    def individual_losses(self, inputs: tuple[Tensor, ...], loss: Tensor) -> Tensor:
        """``l_n = B * lambda_n``: individual losses whose mean is the loss value."""
        shares = self.shares(inputs, loss)
        return shares * share_scale(shares.shape[0])
