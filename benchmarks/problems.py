"""The four DeepOBS test problems of the overhead benchmark, on random data of their shapes.

Architectures follow DeepOBS (TensorFlow ``same``/``valid`` padding written as explicit padding):

- ``logreg``: MNIST logistic regression, ``Linear(784, 10)`` (7,850 parameters);
- ``mnist_mlp``: MNIST MLP 784-1000-500-100-10 with ReLU (1,336,610 parameters);
- ``fmnist_2c2d``: two 5x5 convolutions (32, 64 channels, ``same``) with 2x2 max-pooling, then
  fully connected 1024 and 10 (3,274,634 parameters);
- ``cifar10_3c3d``: convolutions 64@5x5 (valid), 96@3x3 (valid), 128@3x3 (same), each followed
  by 3x3 max-pooling with stride 2 (``same``), then fully connected 512, 256, 10 (895,210 parameters).

Models are plain ``nn.Sequential`` so that both implementations (cockpit-log and the reference
``cockpit-for-pytorch``, which needs BackPACK-traversable models) run the same network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["PROBLEMS", "Problem", "make_data", "make_model"]


def logreg() -> nn.Module:
    """DeepOBS ``mnist_logreg``."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def mnist_mlp() -> nn.Module:
    """DeepOBS ``mnist_mlp``: 784-1000-500-100-10."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 500), nn.ReLU(),
        nn.Linear(500, 100), nn.ReLU(), nn.Linear(100, 10),
    )  # fmt: skip


def fmnist_2c2d() -> nn.Module:
    """DeepOBS ``fmnist_2c2d``."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Linear(1024, 10),
    )  # fmt: skip


def cifar10_3c3d() -> nn.Module:
    """DeepOBS ``cifar10_3c3d`` (895,210 parameters)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 5), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
        nn.Conv2d(64, 96, 3), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
        nn.Conv2d(96, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
        nn.Flatten(), nn.Linear(128 * 3 * 3, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip


Problem = tuple[Callable[[], nn.Module], tuple[int, ...], str]

#: name -> (model builder, input shape of one sample, label for tables)
PROBLEMS: dict[str, Problem] = {
    "logreg": (logreg, (1, 28, 28), "MNIST logistic regression"),
    "mnist_mlp": (mnist_mlp, (1, 28, 28), "MNIST MLP"),
    "fmnist_2c2d": (fmnist_2c2d, (1, 28, 28), "FMNIST 2C2D"),
    "cifar10_3c3d": (cifar10_3c3d, (3, 32, 32), "CIFAR-10 3C3D"),
}


def make_model(problem: str, seed: int = 0) -> nn.Module:
    """The problem's network, initialised from ``seed``."""
    torch.manual_seed(seed)
    return PROBLEMS[problem][0]()


def make_data(problem: str, batch: int, batches: int = 4, seed: int = 1) -> list[tuple[Tensor, Tensor]]:
    """``batches`` random mini-batches of the problem's shape with labels in 0..9."""
    shape = PROBLEMS[problem][1]
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, *shape, generator=gen), torch.randint(0, 10, (batch,), generator=gen))
        for _ in range(batches)
    ]


def num_params(problem: str) -> int:
    """Parameter count of the problem's network."""
    return sum(p.numel() for p in make_model(problem).parameters())
