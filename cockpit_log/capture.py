"""Which modules of a model carry parameters, and whether per-sample gradients are defined for them."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .errors import UnsupportedModelError

__all__ = ["Layer", "check_per_sample_support", "find_layers", "train_mode_batchnorms"]

_NO_PER_SAMPLE_HINT = (
    "Options: put it in eval mode (model.eval() or module.eval()), replace it by a per-sample "
    "normalisation (GroupNorm, LayerNorm), or choose quantities that need no per-sample "
    "gradients: quantities=['Loss', 'Time', 'GradNorm', 'Distance', 'UpdateSize']."
)


@dataclass
class Layer:
    """A module with parameters of its own, and those parameters' names in the model."""

    qualname: str
    module: nn.Module
    names: dict[str, str]  # local name -> model.named_parameters() name


def find_layers(model: nn.Module, trainable: dict[str, nn.Parameter]) -> list[Layer]:
    """Modules owning at least one of the ``trainable`` parameters.

    Raises:
        UnsupportedModelError: if a parameter is shared by several modules (weight tying).
    """
    owner: dict[int, str] = {}
    layers: list[Layer] = []
    wanted = {id(p) for p in trainable.values()}
    for qualname, module in model.named_modules(remove_duplicate=False):
        names = {}
        for local, p in module.named_parameters(recurse=False):
            if id(p) not in wanted:
                continue
            full = f"{qualname}.{local}" if qualname else local
            if id(p) in owner and owner[id(p)] != full:
                raise UnsupportedModelError(
                    f"parameter {owner[id(p)]!r} is shared with {full!r} (weight tying or a module registered "
                    "twice); per-sample statistics need each parameter in one module. Exclude one of them with "
                    "attach(..., exclude=[...]) or untie the weights."
                )
            owner[id(p)] = full
            names[local] = full
        if names and all(ln != "" for ln in names) and not any(known.module is module for known in layers):
            layers.append(Layer(qualname, module, names))
    return layers


def train_mode_batchnorms(model: nn.Module) -> list[str]:
    """Names of BatchNorm modules in training mode (they mix samples through batch statistics)."""
    return [
        name or type(model).__name__
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]


def check_per_sample_support(model: nn.Module, layers: list[Layer]) -> None:
    """Raise for modules that make per-sample gradients undefined or unobservable.

    Raises:
        UnsupportedModelError: naming the module and the options.
    """
    bns = train_mode_batchnorms(model)
    if bns:
        raise UnsupportedModelError(
            f"BatchNorm in training mode ({', '.join(repr(b) for b in bns)}) mixes the samples of a batch, "
            f"so per-sample gradients are undefined. {_NO_PER_SAMPLE_HINT}"
        )
    for layer in layers:
        if isinstance(layer.module, (nn.RNNBase, nn.MultiheadAttention)):
            raise UnsupportedModelError(
                f"module {layer.qualname!r} ({type(layer.module).__name__}) returns a tuple; the cockpit cannot "
                "observe its per-sample gradients. Options: leave its parameters out with "
                f"attach(..., exclude=[{layer.qualname!r}]), or choose quantities that need no per-sample "
                "gradients: quantities=['Loss', 'Time', 'GradNorm', 'Distance', 'UpdateSize']."
            )
