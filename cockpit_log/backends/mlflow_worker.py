"""The MLflow sink's worker process: every MLflow call and every picture, off the training process.

Why a process and not only a thread: drawing a layer-wise histogram grid takes about a second of
Python, and MLflow's client (and its embedded SQL store) is Python too; on a thread of the training
process both would hold the interpreter lock against the training loop. The worker also gets its
own MLflow HTTP settings (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``), so a
call to an unreachable or hung server fails within the sink's timeout instead of MLflow's retry
budget of minutes, without changing those settings for the user's own MLflow calls.

Protocol: length-prefixed pickles over the worker's stdin/stdout. The parent sends
``{"cmd": "init", "tracking_uri": ...}``, then ``{"cmd": "deliver", "run_id": ..., "items": [...]}``
(answered by ``{"ok": True, "run_id": ...}`` or ``{"ok": False, "error": ..., "permanent": ...}``), and
``{"cmd": "exit"}``. The worker exits when its stdin closes (the training process ended).

The worker imports only the light modules of the package (records, naming, render and this
subpackage), not ``cockpit_log/__init__`` (which imports torch): it registers ``cockpit_log`` as a
bare package before importing them.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

__all__ = ["WorkerError", "WorkerProcess", "main"]

_HEADER = struct.Struct("<Q")
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])
_BOOT = (
    "import sys, types; p = types.ModuleType('cockpit_log'); p.__path__ = [sys.argv[1]]; "
    "sys.modules['cockpit_log'] = p; from cockpit_log.backends.mlflow_worker import main; main()"
)


class WorkerError(RuntimeError):
    """The worker failed a request; ``permanent`` when MLflow refused it for good.

    ``run_id`` is the run the worker was writing to, if it had found or created one.
    """

    def __init__(self, message: str, permanent: bool = False, run_id: str | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.run_id = run_id


def _send(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _recv(stream: IO[bytes]) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (n,) = _HEADER.unpack(head)
    data = stream.read(n)
    if len(data) < n:
        return None
    return pickle.loads(data)  # noqa: S301 - our own child process


class WorkerProcess:
    """Parent side: starts the worker on first use, restarts it after a crash, kills it when it hangs.

    Args:
        tracking_uri: the MLflow tracking URI the worker talks to.
        timeout_s: MLflow HTTP request timeout in the worker (whole seconds, at least 1).
        reply_timeout_s: longest wait for one answer (start-up, several calls, pictures) before the
            worker is taken as hung and killed.
    """

    def __init__(self, tracking_uri: str, timeout_s: float = 10.0, reply_timeout_s: float = 300.0) -> None:
        self.tracking_uri = tracking_uri
        self.timeout_s = timeout_s
        self.reply_timeout_s = reply_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._replies: queue.Queue[Any] = queue.Queue()
        self._stderr: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._init_pending = False
        self.starts = 0

    def start(self) -> None:
        """Start the worker now (it imports MLflow while training runs); the first :meth:`call` waits for it."""
        with self._lock:
            self._ensure_started()

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its answer; raises :class:`WorkerError` on failure."""
        with self._lock:
            self._ensure_started()
            if self._init_pending:
                self._init_pending = False
                self._check(self._exchange(None))
            reply = self._exchange(message)
        return self._check(reply)

    @staticmethod
    def _check(reply: dict[str, Any]) -> dict[str, Any]:
        if not reply.get("ok"):
            raise WorkerError(str(reply.get("error")), bool(reply.get("permanent")), reply.get("run_id"))
        return reply

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not within ``timeout`` s."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                _send(proc.stdin, {"cmd": "exit"})  # type: ignore[arg-type]
                proc.stdin.close()  # type: ignore[union-attr]
                proc.wait(timeout)
            except Exception:  # noqa: BLE001
                self.kill()
        self._cleanup()

    def kill(self) -> None:
        """Kill the worker now (a request under way fails)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    # ------------------------------------------------------------------ internals
    def _ensure_started(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            self._start()
            with contextlib.suppress(OSError):  # a worker that died at once: the missing answer reports it
                _send(self._proc.stdin, {"cmd": "init", "tracking_uri": self.tracking_uri})  # type: ignore[union-attr,arg-type]
            self._init_pending = True

    def _start(self) -> None:
        self._cleanup()
        env = dict(os.environ)
        env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        env["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(self.timeout_s)))
        self._stderr = tempfile.TemporaryFile(prefix="cockpit-mlflow-worker-")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, _PACKAGE_DIR],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self.starts += 1
        self._replies = queue.Queue()
        replies, stdout = self._replies, self._proc.stdout

        def read() -> None:
            while True:
                try:
                    msg = _recv(stdout)  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001
                    msg = None
                replies.put(msg)
                if msg is None:
                    return

        threading.Thread(target=read, name="cockpit-log-mlflow-reader", daemon=True).start()

    def _exchange(self, message: dict[str, Any] | None) -> dict[str, Any]:
        """Send ``message`` (``None``: send nothing) and wait for the next answer."""
        proc = self._proc
        assert proc is not None
        try:
            if message is not None:
                _send(proc.stdin, message)  # type: ignore[arg-type]
            reply = self._replies.get(timeout=self.reply_timeout_s)
        except queue.Empty:
            self.kill()
            raise WorkerError(f"MLflow worker gave no answer within {self.reply_timeout_s:.0f} s; restarted") from None
        except (BrokenPipeError, OSError):
            reply = None
        if reply is None:
            self.kill()
            raise WorkerError(f"MLflow worker exited (code {proc.poll()}): {self._stderr_tail()}")
        return reply

    def _stderr_tail(self, n: int = 800) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - n))
            return self._stderr.read().decode("utf-8", "replace").strip()
        except Exception:  # noqa: BLE001
            return ""

    def _cleanup(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream is not None:
                        stream.close()
                except Exception:  # noqa: BLE001,S110
                    pass
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def main() -> None:
    """Worker loop (runs in the child process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is for the training process; it closes us
    with contextlib.suppress(AttributeError, OSError):
        os.nice(10)  # training first: the worker takes the CPU the training process leaves
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # anything printed goes to stderr, never into the protocol
    sys.stdout = sys.stderr

    from mlflow import MlflowClient

    from .mlflow_ops import MlflowWriter, is_permanent

    writer: MlflowWriter | None = None
    while True:
        msg = _recv(proto_in)
        if msg is None or msg.get("cmd") == "exit":
            return
        try:
            if msg["cmd"] == "init":
                writer = MlflowWriter(MlflowClient(msg["tracking_uri"]))
                reply: dict[str, Any] = {"ok": True}
            elif msg["cmd"] == "deliver":
                assert writer is not None, "init first"
                if msg.get("run_id"):
                    writer.run_id = msg["run_id"]
                writer.apply(msg["items"])
                reply = {"ok": True, "run_id": writer.run_id}
            else:
                reply = {"ok": False, "error": f"unknown command {msg.get('cmd')!r}", "permanent": True}
        except Exception as err:  # noqa: BLE001 - reported to the parent, which retries or spools
            reply = {
                "ok": False,
                "error": f"{type(err).__name__}: {err}",
                "permanent": is_permanent(err),
                "run_id": writer.run_id if writer is not None else None,
            }
        _send(proto_out, reply)
