"""What the MLflow sink sends, and how it lands in an MLflow run (shared by the sink's worker and the replay).

The sink turns each step's records, and every run-level action, into an :class:`Item`, numbered
in the order it was made (``seq``) and stamped with the wall-clock time of its step (``ts``, ms). A
:class:`MlflowWriter` applies a batch of items to one run through :class:`mlflow.MlflowClient`.
Applying the same batch twice changes nothing (metrics have fixed timestamps and MLflow's stores
drop exact duplicates; artifacts are overwritten under the same name; records carry their item's
``seq`` and their index ``i`` in it),
so batches can be retried and spools replayed safely.

Layout in the run (naming from :mod:`cockpit_log.naming`):

- metrics ``cockpit/<quantity>`` and ``cockpit/<quantity>/<parameter>``: every float value and
  every float per-parameter value of a record, at the record's step (NaN included; MLflow's SQL
  stores keep +-Inf as +-1.8e308);
- metrics ``cockpit/summary/<name>``: :func:`cockpit_log.summary.run_summary` at close (finite
  values only), e.g. ``cockpit/summary/alpha_median``, ``cockpit/summary/loss_last``;
- params ``cockpit/<setting>``: the cockpit's settings (quantities, schedule, optimizer, lr,
  batch size, number of parameters, ...);
- artifacts ``cockpit/records/part-<seq>.jsonl.gz``: every record in full (the raw counts and
  edges of every histogram, reasons, diagnostics), one JSON object ``{"seq", "i", "ts", "record"}``
  per line, gzip-compressed (histogram edges repeat every step: about 18 times smaller);
  :func:`cockpit_log.backends.mlflow_sink.read_mlflow` reads them back;
- artifacts ``cockpit/images/<quantity>/step-<step>.png`` (the histogram),
  ``.../step-<step>-layers.png`` (one histogram per parameter) for histogram records chosen by
  the sink's ``image_every``; ``cockpit/view.png``: the cockpit view at close, when provided.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..naming import PREFIX, metric_key, quantity_key
from ..records import Histogram1d, Histogram2d, Record, record_from_dict, record_to_dict

__all__ = [
    "IMAGES_DIR",
    "RECORDS_DIR",
    "VIEW_PATH",
    "Item",
    "MlflowWriter",
    "image_figures",
    "is_permanent",
    "item_from_json",
    "item_to_json",
    "param_key",
    "record_metrics",
    "summary_key",
]

RECORDS_DIR = f"{PREFIX}/records"
IMAGES_DIR = f"{PREFIX}/images"
VIEW_PATH = f"{PREFIX}/view.png"
SINK_ID_TAG = "cockpit_log_sink_id"
MAX_METRICS_PER_CALL = 1000
MAX_PARAMS_PER_CALL = 100
MAX_PARAM_LENGTH = 6000

# item kinds
RECORDS = "records"  #: one step's records: metrics, lines of the records artifact, pictures of ``images``
IMAGE = "image"  #: pictures of records already sent (the last histograms at close)
START = "start"  #: find or create the run (data: experiment_name/_id, run_name, tags, sink_id)
PARAMS = "params"  #: data: {"params": {key: value}}
SUMMARY = "summary"  #: data: {"metrics": {key: value}, "step": int}
VIEW = "view"  #: data: {"png_b64": base64 PNG}
END = "end"  #: data: {"status": "FINISHED"}


@dataclass(frozen=True)
class Item:
    """One unit of work for the MLflow run: one step's records, or a run-level action (``kind``).

    ``images`` are the indices of the records to draw; ``size`` estimates the bytes held in memory.
    """

    seq: int
    ts: int
    kind: str
    records: tuple[Record, ...] = ()
    images: tuple[int, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    size: int = 256


def summary_key(name: str) -> str:
    """Metric key of a run-summary number, e.g. ``"alpha_median"`` -> ``"cockpit/summary/alpha_median"``."""
    return f"{PREFIX}/summary/{name}"


def param_key(name: str) -> str:
    """Param key of a cockpit setting, e.g. ``"optimizer"`` -> ``"cockpit/optimizer"``."""
    return f"{PREFIX}/{name}"


def item_to_json(item: Item) -> str:
    """One line of strict JSON for ``item`` (spill and spool files)."""
    out: dict[str, Any] = {"seq": item.seq, "ts": item.ts, "kind": item.kind}
    if item.records:
        out["records"] = [record_to_dict(r) for r in item.records]
    if item.images:
        out["images"] = list(item.images)
    if item.data:
        out["data"] = item.data
    if item.size != 256:
        out["size"] = item.size
    return json.dumps(out, allow_nan=False, separators=(",", ":"))


def item_from_json(line: str) -> Item:
    """Inverse of :func:`item_to_json`."""
    d = json.loads(line)
    return Item(
        seq=int(d["seq"]),
        ts=int(d["ts"]),
        kind=str(d["kind"]),
        records=tuple(record_from_dict(r) for r in d.get("records", ())),
        images=tuple(int(i) for i in d.get("images", ())),
        data=d.get("data", {}),
        size=int(d.get("size", 256)),
    )


def record_metrics(record: Record) -> list[tuple[str, float]]:
    """``(key, value)`` of every float in ``record``: the network-wide value and each parameter's."""
    out: list[tuple[str, float]] = []
    if isinstance(record.value, float | int):
        out.append((metric_key(record.quantity), float(record.value)))
    for name, v in record.per_param.items():
        if isinstance(v, float | int):
            out.append((metric_key(record.quantity, name), float(v)))
    return out


def image_figures(record: Record) -> dict[str, Any]:
    """Artifact path -> matplotlib ``Figure`` of the pictures of a histogram record (none for scalars).

    A :class:`~cockpit_log.records.Histogram1d` gives the histogram on its own bins (the paper's
    range, e.g. [-1, 1] for GradHist1d) and, with per-parameter values, the layer-wise grid; a
    :class:`~cockpit_log.records.Histogram2d` gives the heatmap with its marginals.
    """
    from ..render import histogram1d_figure, histogram2d_figure, layer_histograms_figure

    base = f"{IMAGES_DIR}/{quantity_key(record.quantity)}/step-{record.step:07d}"
    title = f"{record.quantity}, step {record.step}"
    out: dict[str, Any] = {}
    if isinstance(record.value, Histogram1d):
        out[f"{base}.png"] = histogram1d_figure(record.value, title=title)
        layers = {k: v for k, v in record.per_param.items() if isinstance(v, Histogram1d)}
        if layers:
            out[f"{base}-layers.png"] = layer_histograms_figure(layers, title=f"{title}, per parameter")
    elif isinstance(record.value, Histogram2d):
        out[f"{base}.png"] = histogram2d_figure(record.value, title=title)
    return out


def is_permanent(err: BaseException) -> bool:
    """Whether MLflow refused a request for good (a 4xx answer other than timeout or rate limit)."""
    from mlflow.exceptions import MlflowException

    if not isinstance(err, MlflowException):
        return False
    try:
        status = int(err.get_http_status_code())
    except Exception:  # noqa: BLE001
        return False
    return 400 <= status < 500 and status not in (408, 429)


class MlflowWriter:
    """Applies batches of :class:`Item` to one MLflow run (see the module docstring for the layout).

    Args:
        client: an ``mlflow.MlflowClient`` for the tracking URI of the run.
        run_id: the run; ``None`` until a ``START`` item found or created it.
        render: draw the images of histogram records (otherwise they are skipped).
    """

    def __init__(self, client: Any, run_id: str | None = None, render: bool = True) -> None:
        self.client = client
        self.run_id = run_id
        self.render = render

    def apply(self, items: Sequence[Item]) -> None:
        """Send ``items`` to the run: params, then artifacts, then metrics, then the end of the run."""
        from mlflow.entities import Metric, Param

        for item in items:
            if item.kind == START:
                self._start(item.data)
        if self.run_id is None:
            raise RuntimeError("no MLflow run: the batch has no start item and no run id is known")
        params: dict[str, str] = {}
        metrics: list[Metric] = []
        for item in items:
            if item.kind == PARAMS:
                params.update({k: str(v)[:MAX_PARAM_LENGTH] for k, v in item.data["params"].items()})
            elif item.kind == RECORDS:
                for r in item.records:
                    metrics.extend(Metric(k, v, item.ts, r.step) for k, v in record_metrics(r))
            elif item.kind == SUMMARY:
                step = int(item.data.get("step", 0))
                metrics.extend(Metric(k, float(v), item.ts, step) for k, v in item.data["metrics"].items())
        keys = list(params)
        for i in range(0, len(keys), MAX_PARAMS_PER_CALL):
            chunk = [Param(k, params[k]) for k in keys[i : i + MAX_PARAMS_PER_CALL]]
            self.client.log_batch(self.run_id, params=chunk)
        self._artifacts(items)
        for i in range(0, len(metrics), MAX_METRICS_PER_CALL):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + MAX_METRICS_PER_CALL])
        for item in items:
            if item.kind == END:
                self.client.set_terminated(self.run_id, str(item.data.get("status", "FINISHED")))

    # ------------------------------------------------------------------ parts
    def _start(self, data: Mapping[str, Any]) -> None:
        tags = {str(k): str(v) for k, v in data.get("tags", {}).items()}
        if self.run_id is None:
            sink_id = str(data["sink_id"])
            experiment_id = self._experiment_id(data)
            # a create whose answer was lost must not make a second run: look for ours first
            found = self.client.search_runs([experiment_id], filter_string=f"tags.{SINK_ID_TAG} = '{sink_id}'")
            if found:
                self.run_id = found[0].info.run_id
            else:
                run = self.client.create_run(
                    experiment_id, run_name=data.get("run_name"), tags={**tags, SINK_ID_TAG: sink_id}
                )
                self.run_id = run.info.run_id
                return
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def _experiment_id(self, data: Mapping[str, Any]) -> str:
        from mlflow.exceptions import MlflowException

        if data.get("experiment_id"):
            return str(data["experiment_id"])
        name = data.get("experiment_name")
        if not name:
            return "0"  # MLflow's default experiment
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:  # created meanwhile by someone else
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def _artifacts(self, items: Sequence[Item]) -> None:
        from ..render import figure_png

        with tempfile.TemporaryDirectory(prefix="cockpit-mlflow-") as tmp:
            root = Path(tmp)
            files: dict[str, bytes] = {}
            lines = [
                json.dumps(
                    {"seq": it.seq, "i": i, "ts": it.ts, "record": record_to_dict(r)},
                    allow_nan=False,
                    separators=(",", ":"),
                )
                for it in items
                if it.kind == RECORDS
                for i, r in enumerate(it.records)
            ]
            if lines:
                first = min(it.seq for it in items if it.kind == RECORDS and it.records)
                text = ("\n".join(lines) + "\n").encode("utf-8")
                files[f"{RECORDS_DIR}/part-{first:010d}.jsonl.gz"] = gzip.compress(text, compresslevel=6, mtime=0)
            if self.render:
                for it in items:
                    drawn = it.records if it.kind == IMAGE else [it.records[i] for i in it.images]
                    for r in drawn:
                        for path, fig in image_figures(r).items():
                            files[path] = figure_png(fig)
            for it in items:
                if it.kind == VIEW:
                    files[VIEW_PATH] = base64.b64decode(it.data["png_b64"])
            if not files:
                return
            for rel, content in files.items():
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            self.client.log_artifacts(self.run_id, os.fspath(root))
