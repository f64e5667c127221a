"""Read cockpit records back from an offline W&B run directory (its ``run-<id>.wandb`` transaction log).

The transaction log is a sequence of W&B's own protobuf ``Record`` messages
(``wandb.proto.wandb_internal_pb2.Record``), framed like a LevelDB log: a 7-byte file header
(``:W&B``, magic ``0xBEE1``, version 0), then 32 KiB blocks of chunks, each ``crc32 (uint32 LE) |
length (uint16 LE) | type (uint8: 1 full, 2 first, 3 middle, 4 last) | data``, where a message
longer than a block's remainder is split into first/middle/last chunks. W&B checksums each chunk
with zlib's CRC-32 of the type byte followed by the data. A chunk with a bad checksum or cut short
(a run killed mid-write) ends the reading with a warning: everything before it is returned.

W&B writes the log in buffered form: while a run is going, only what was flushed is visible
(every 15 s by default, the ``x_transaction_log_flush_interval`` setting); after ``finish`` all of it.
"""

from __future__ import annotations

import json
import math
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CockpitWarning
from ..naming import PREFIX
from ..records import Histogram1d, Histogram2d, Record
from ._wandb_convert import INFO_PREFIX, META_PREFIX, STEP_KEY, TABLE_PREFIX

__all__ = ["RunLog", "find_log", "iter_log", "load_run_log", "read_wandb"]

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32768
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
#: the config key under which the sink records ``quantity_key -> quantity name``
QUANTITIES_CONFIG_KEY = "cockpit_quantities"


def find_log(path: str | os.PathLike[str]) -> Path:
    """The ``run-*.wandb`` file of an offline run directory (or ``path`` itself if it is that file)."""
    p = Path(path)
    if p.is_file():
        return p
    logs = sorted(p.glob("run-*.wandb"))
    if not logs:
        raise FileNotFoundError(f"no W&B transaction log (run-*.wandb) in {p}")
    return logs[0]


def iter_log(path: str | os.PathLike[str]) -> Iterator[Any]:
    """Every protobuf ``Record`` of a ``.wandb`` transaction log, in the order written."""
    from wandb.proto import wandb_internal_pb2 as pb

    file = find_log(path)
    data = file.read_bytes()
    if data[: len(HEADER)] != HEADER:
        raise ValueError(f"{file} is not a W&B transaction log (unexpected header {data[:7]!r})")
    pos = len(HEADER)
    pending: bytes | None = None
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # block trailer
            pos += left
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += left
            continue
        chunk = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            warnings.warn(
                f"cockpit-log: {file} ends with an incomplete or damaged record at byte {pos}; "
                "returning what precedes it (a run still going or killed mid-write).",
                CockpitWarning,
                stacklevel=2,
            )
            return
        pos += CHUNK_HEADER + length
        if kind == FULL:
            message = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE and pending is not None:
            pending += chunk
            continue
        elif kind == LAST and pending is not None:
            message, pending = pending + chunk, None
        else:
            raise ValueError(f"{file}: unexpected chunk type {kind} at byte {pos}")
        record = pb.Record()
        record.ParseFromString(message)
        yield record


def _item_value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    which = item.WhichOneof("value") if hasattr(item, "WhichOneof") else None
    if which is None or which == "none":
        return None
    value = getattr(item, which)
    return json.loads(value) if which == "json" else value


def _item_path(item: Any) -> list[str]:
    return list(item.nested_key) if len(item.nested_key) else [item.key]


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    target[path[-1]] = value


@dataclass
class RunLog:
    """What an offline W&B run wrote: history rows, config, summary, and where its files are."""

    run_dir: Path
    run_id: str = ""
    project: str = ""
    entity: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    finished: bool = False

    @property
    def files_dir(self) -> Path:
        """The run's ``files`` directory (media and tables live under it)."""
        return self.run_dir / "files"


def load_run_log(path: str | os.PathLike[str]) -> RunLog:
    """History rows, config and summary of an offline run, from its transaction log."""
    file = find_log(path)
    log = RunLog(run_dir=file.parent)
    for rec in iter_log(file):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            log.run_id, log.project, log.entity = rec.run.run_id, rec.run.project, rec.run.entity
            for item in rec.run.config.update:
                _set_path(log.config, _item_path(item), _item_value(item))
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in rec.history.item:
                _set_path(row, _item_path(item), _item_value(item))
            log.history.append(row)
        elif kind == "config":
            for item in rec.config.update:
                _set_path(log.config, _item_path(item), _item_value(item))
        elif kind == "summary":
            for item in rec.summary.update:
                _set_path(log.summary, _item_path(item), _item_value(item))
            for item in rec.summary.remove:
                log.summary.pop(_item_path(item)[0], None)
        elif kind == "exit":
            log.finished = True
    return log


def _float(v: Any) -> float:
    if isinstance(v, str):
        return float({"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}.get(v, v))
    return math.nan if v is None else float(v)


def _hist1d(v: dict[str, Any], meta: dict[str, Any]) -> Histogram1d:
    counts = meta.get("counts", v["values"])
    edges = meta.get("edges", v["bins"])
    return Histogram1d(
        counts=np.asarray(counts, dtype=np.int64),
        edges=np.asarray([_float(e) for e in edges], dtype=np.float64),
        below=int(meta.get("below", 0)),
        above=int(meta.get("above", 0)),
        nonfinite=int(meta.get("nonfinite", 0)),
    )


def _hist2d(table_file: Path, meta: dict[str, Any]) -> Histogram2d:
    x_edges = np.asarray([_float(e) for e in meta["x_edges"]], dtype=np.float64)
    y_edges = np.asarray([_float(e) for e in meta["y_edges"]], dtype=np.float64)
    table = json.loads(table_file.read_text(encoding="utf-8"))
    cols = {c: i for i, c in enumerate(table["columns"])}
    counts = np.zeros((len(x_edges) - 1, len(y_edges) - 1), dtype=np.int64)
    for row in table["data"]:
        counts[int(row[cols["x_bin"]]), int(row[cols["y_bin"]])] = int(row[cols["count"]])
    extra = {k: int(meta.get(k, 0)) for k in ("x_below", "x_above", "y_below", "y_above", "nonfinite")}
    return Histogram2d(counts=counts, x_edges=x_edges, y_edges=y_edges, **extra)


def _quantity_names(config: dict[str, Any]) -> dict[str, str]:
    names = config.get(QUANTITIES_CONFIG_KEY, {})
    if isinstance(names, dict) and "value" in names and isinstance(names["value"], dict):
        names = names["value"]
    return dict(names) if isinstance(names, dict) else {}


@dataclass
class _Pending:
    value: Any = None
    per_param: dict[str, Any] = field(default_factory=dict)
    tables: dict[str | None, Path] = field(default_factory=dict)
    info: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def read_wandb(path: str | os.PathLike[str]) -> list[Record]:
    """All cockpit records of an offline W&B run directory (``wandb/offline-run-...``), in step order.

    Inverts the key scheme of :mod:`cockpit_log.backends._wandb_convert`: scalars, per-parameter
    values, ``wandb.Histogram`` counts and edges (with the clipped and NaN counts from
    ``cockpit_meta/``), 2-D histograms from their tables, ``info`` diagnostics and NaN reasons.
    Within a step, records are ordered by quantity name. Rows logged by anyone else are ignored.

    Raises:
        FileNotFoundError: ``path`` holds no ``run-*.wandb`` file.
    """
    log = load_run_log(path)
    if not log.finished:
        warnings.warn(
            f"cockpit-log: the W&B run in {log.run_dir} has not finished (no exit record yet): it is still "
            "going, was killed, or W&B's service is still writing it; returning what is on disk.",
            CockpitWarning,
            stacklevel=2,
        )
    names = _quantity_names(log.config)
    found: dict[tuple[int, str], _Pending] = {}
    pre, info_pre, meta_pre, table_pre = f"{PREFIX}/", f"{INFO_PREFIX}/", f"{META_PREFIX}/", f"{TABLE_PREFIX}/"
    for row in log.history:
        if STEP_KEY not in row:
            continue
        step = int(row[STEP_KEY])
        for key, v in row.items():
            if key == STEP_KEY:
                continue
            if key.startswith(pre):
                qk, _, param = key[len(pre) :].partition("/")
                p = found.setdefault((step, qk), _Pending())
                if isinstance(v, dict):
                    if v.get("_type") != "histogram":
                        continue  # images: the 2-D counts come from the tables
                    v = ("hist", v)
                if param:
                    p.per_param[param] = v
                else:
                    p.value = v
            elif key.startswith(info_pre):
                qk, _, name = key[len(info_pre) :].partition("/")
                found.setdefault((step, qk), _Pending()).info[name] = _float(v)
            elif key.startswith(meta_pre):
                found.setdefault((step, key[len(meta_pre) :]), _Pending()).meta = json.loads(v)
            elif key.startswith(table_pre) and isinstance(v, dict) and "path" in v:
                qk, _, param = key[len(table_pre) :].partition("/")
                found.setdefault((step, qk), _Pending()).tables[param or None] = log.files_dir / v["path"]

    records: list[Record] = []
    for (step, qk), p in found.items():
        hist_meta = p.meta.get("hist", {})

        def value_of(v: Any, param: str | None, p: _Pending = p, hist_meta: dict[str, Any] = hist_meta) -> Any:
            if param in p.tables:
                return _hist2d(p.tables[param], hist_meta.get(param or "", {}))
            if isinstance(v, tuple):
                return _hist1d(v[1], hist_meta.get(param or "", {}))
            return _float(v)

        if p.value is None and None not in p.tables:
            continue  # nothing network-wide was logged for this quantity (e.g. a lone info key)
        per_param = {k: value_of(v, k) for k, v in p.per_param.items()}
        for param in p.tables:
            if param is not None and param not in per_param:
                per_param[param] = value_of(None, param)
        records.append(
            Record(
                step=step,
                quantity=names.get(qk, qk),
                value=value_of(p.value, None),
                per_param=per_param,
                reason=p.meta.get("reason"),
                info=p.info,
            )
        )
    records.sort(key=lambda r: (r.step, r.quantity))
    return records
