"""The unavoidable parts of a tracked step, each timed alone, as multiples of the plain step.

    python benchmarks/floors.py [--problems logreg,mnist_mlp,fmnist_2c2d,cifar10_3c3d] [--repeats 5]

For each problem (batch size 128, one torch thread; medians of ``--repeats`` CPU-time readings):

- ``plain``: one uninstrumented SGD step (forward, backward, update);
- ``elements``: forming every per-sample gradient element once (block by block, as the
  histogram must see them) and counting them into 100 bins: the floor of GradHist1d, hence of
  ``economy`` (every other first-order statistic has a closed form or rides along);
- ``hessian diag``: one exact Hessian-diagonal pass (BackPACK ``DiagHessian`` on the shadow model),
  the floor of ``business`` with the default ``curvature="hessian"``;
- ``ggn_mc diag``: the Monte-Carlo GGN diagonal with one sample (``curvature="ggn_mc"``);
- ``HVP``: one Hessian-vector product (HessMaxEV takes about 15 with Lanczos, after one
  ``create_graph`` forward/backward, also timed as ``HVP setup``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from problems import PROBLEMS, make_data, make_model  # noqa: E402
from torch import nn  # noqa: E402

from cockpit_log import binning  # noqa: E402
from cockpit_log.capture import find_layers  # noqa: E402
from cockpit_log.curvature import CapturedBatch, CurvatureEngine, DiagKind, EigenSettings  # noqa: E402
from cockpit_log.per_sample import layer_per_sample_grads  # noqa: E402
from cockpit_log.reduce import BIN_ELEMENTS  # noqa: E402


def _cpu(fn, repeats: int) -> float:  # noqa: ANN001
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1e3


def measure(problem: str, repeats: int, batch: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = make_model(problem)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = make_data(problem, batch)[0]

    def plain() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    params = dict(model.named_parameters())
    layers = find_layers(model, params)
    kept: list[tuple[nn.Module, tuple[torch.Tensor, ...], torch.Tensor, list[str]]] = []
    handles = []
    for layer in layers:

        def hook(module, args, out, layer=layer):  # noqa: ANN001, ANN202
            inputs = tuple(a.detach() for a in args)
            out.register_hook(lambda d: kept.append((module, inputs, d.detach(), list(layer.names))))

        handles.append(layer.module.register_forward_hook(hook))
    loss_fn(model(x), y).backward()
    for h in handles:
        h.remove()

    def elements() -> None:
        for module, inputs, delta, names in kept:
            width = sum(getattr(module, n).numel() for n in names)
            step = max(1, BIN_ELEMENTS // width)
            for start in range(0, delta.shape[0], step):
                blk = slice(start, start + step)
                grads = layer_per_sample_grads(module, tuple(i[blk] for i in inputs), delta[blk] * batch, names)
                for g in grads.values():
                    cats = binning.dense_categories(g.reshape(-1), -1.0, 1.0, 100, reuse=True)
                    torch.bincount(cats, minlength=103)

    engine = CurvatureEngine(model, params, layers)
    captured = CapturedBatch(args=(x,), targets=(y,))
    out = {"plain": _cpu(plain, repeats), "elements": _cpu(elements, repeats)}
    out["hessian diag"] = _cpu(lambda: engine.diagonals(loss_fn, captured, [DiagKind("hessian")]), repeats)
    out["ggn_mc diag"] = _cpu(lambda: engine.diagonals(loss_fn, captured, [DiagKind("ggn_mc", 1)]), repeats)
    one, four = EigenSettings("lanczos", 1, 0.0, 0.0), EigenSettings("lanczos", 4, 0.0, 0.0)  # no early stop
    setup = _cpu(lambda: engine.max_eigenvalue(loss_fn, captured, one), repeats)
    three = _cpu(lambda: engine.max_eigenvalue(loss_fn, captured, four), repeats)
    out["HVP"] = (three - setup) / 3
    out["HVP setup"] = setup - out["HVP"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cols = ["plain", "elements", "hessian diag", "ggn_mc diag", "HVP setup", "HVP"]
    print(f"CPU ms (× the plain step), batch {args.batch_size}, 1 thread, median of {args.repeats}")
    print("| problem | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for problem in args.problems.split(","):
        m = measure(problem, args.repeats, args.batch_size)
        cells = [f"{m['plain']:.1f}"] + [f"{m[c]:.1f} ({m[c] / m['plain']:.2f}×)" for c in cols[1:]]
        print(f"| {problem} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
