"""A persistent pool of worker subprocesses with a wall-clock limit per item.

Both the reward (scoring model answers) and the dataset builder (sympy on random trees) run code
that can, rarely, take far too long on one input. This pool bounds that cost to one item:

- Workers are plain subprocesses (``python -m tsm.parallel``) talking pickled messages over pipes,
  not ``multiprocessing`` children. So the pool works from DataLoader workers (daemonic processes
  may not have multiprocessing children), under DDP, and with torch already loaded (no fork of a
  multi-threaded parent). No ``signal.alarm`` anywhere: a worker that overruns is killed and
  replaced, and its item is reported as timed out.
- Order is kept: ``map`` returns one ``TaskResult`` per item, in input order.
- ``workers=0`` runs the function inline (no time limit): for tests and debugging.

The function (and an optional initializer) are given as ``"package.module:function"`` so a fresh
interpreter can import them; items and results must pickle.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

_READY = "__tsm_worker_ready__"
_START_TIMEOUT_S = 120.0  # a cold interpreter importing sympy/torch on a loaded 2-core box


@dataclass(frozen=True)
class TaskResult:
    """Outcome of one item: ``value`` when ``ok``; else ``timed_out`` or an ``error`` string."""

    value: Any = None
    ok: bool = False
    timed_out: bool = False
    error: str | None = None


def resolve(path: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` and return the function."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected 'package.module:function', got {path!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{path!r} is not callable")
    return obj


def _call(fn: Callable[[Any], Any], item: Any) -> TaskResult:
    try:
        return TaskResult(value=fn(item), ok=True)
    except Exception as exc:  # noqa: BLE001 - the item failed, not the pool: report, don't raise
        return TaskResult(error=f"{type(exc).__name__}: {exc}"[:500])


@dataclass
class _Job:
    """A chunk sent to one worker: its item indices, how many have answered, the current deadline."""

    indices: list[int]
    deadline: float
    done: int = 0


class _Worker:
    """One subprocess and its two pipe ends."""

    def __init__(self, fn: str, init: str | None, env: dict[str, str]):
        args = [sys.executable, "-m", "tsm.parallel", fn] + ([init] if init else [])
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        # Connection gives length-prefixed pickles on raw pipe fds; dup so Popen's file objects
        # and the Connections can be closed independently.
        self.send_conn = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self.recv_conn = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.ready = False
        self.started = time.monotonic()
        self.job: _Job | None = None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for conn in (self.send_conn, self.recv_conn):
            try:
                conn.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - kill(9) does not fail
            pass


class TimeoutPool:
    """Persistent worker subprocesses; ``map`` gives each item at most ``timeout_s`` of wall clock.

    Counters ``timeouts`` and ``restarts`` accumulate over the pool's life.
    """

    def __init__(self, fn: str, workers: int, timeout_s: float, init: str | None = None):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.fn_path, self.init_path = fn, init
        self.n_workers, self.timeout_s = workers, float(timeout_s)
        self.timeouts = 0
        self.restarts = 0
        self._workers: list[_Worker] = []
        self._fn: Callable[[Any], Any] | None = None
        if workers == 0:
            if init:
                resolve(init)()
            self._fn = resolve(fn)
        else:
            resolve(fn)  # fail now, in the caller, if the path is wrong
        self._finalizer = weakref.finalize(self, TimeoutPool._shutdown, self._workers)

    # -- lifecycle ----------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["TSM_PARALLEL_SYSPATH"] = json.dumps([p for p in sys.path if p])
        # Workers are single-threaded by design: one item at a time, one core each.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        return env

    def _spawn(self) -> _Worker:
        return _Worker(self.fn_path, self.init_path, self._env())

    def _ensure_workers(self) -> None:
        while len(self._workers) < self.n_workers:
            self._workers.append(self._spawn())

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers[self._workers.index(worker)] = self._spawn()
        self.restarts += 1

    @staticmethod
    def _shutdown(workers: list[_Worker]) -> None:
        for w in workers:
            try:
                w.send_conn.send(None)  # polite stop; kill() below makes sure
            except (OSError, ValueError):
                pass
            w.kill()
        workers.clear()

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> TimeoutPool:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work ---------------------------------------------------------------------------------
    def map(self, items: Sequence[Any], chunk_size: int = 1) -> list[TaskResult]:
        """Apply the function to every item; results in input order.

        With ``chunk_size > 1`` a worker receives that many items in one message (less IPC and no
        idle round trip between items) but still answers item by item, and every item has its own
        ``timeout_s``: an item that overruns times out alone, its worker is replaced, and the rest
        of its chunk goes back to the queue. A hung item costs itself only, whatever the chunk size.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        items = list(items)
        if self._fn is not None:
            return [_call(self._fn, item) for item in items]
        results: list[TaskResult | None] = [None] * len(items)
        pending = deque(list(range(i, min(i + chunk_size, len(items)))) for i in range(0, len(items), chunk_size))
        self._ensure_workers()

        def requeue_rest(w: _Worker) -> None:
            assert w.job is not None
            rest = w.job.indices[w.job.done + 1:]
            if rest:
                pending.appendleft(rest)

        while pending or any(w.job is not None for w in self._workers):
            now = time.monotonic()
            for w in list(self._workers):
                if w.ready and w.job is None and pending:
                    chunk = pending.popleft()
                    try:
                        w.send_conn.send([items[i] for i in chunk])
                    except (OSError, ValueError):  # died between jobs: retry the chunk elsewhere
                        pending.appendleft(chunk)
                        self._replace(w)
                        continue
                    w.job = _Job(chunk, now + self.timeout_s)
            by_conn = {w.recv_conn: w for w in self._workers}
            deadlines = [w.job.deadline for w in self._workers if w.job is not None]
            deadlines += [w.started + _START_TIMEOUT_S for w in self._workers if not w.ready]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for conn in wait(list(by_conn), timeout=wait_s):
                w = by_conn[conn]
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    msg = None
                if msg is None:  # the worker died: its current item fails, the rest is retried
                    if w.job is None and not w.ready:
                        raise RuntimeError(f"worker for {self.fn_path} exited during start-up")
                    if w.job is not None:
                        results[w.job.indices[w.job.done]] = TaskResult(error="WorkerDied: worker process exited")
                        requeue_rest(w)
                        w.job = None
                    self._replace(w)
                elif msg == _READY:
                    w.ready = True
                else:  # one item's result; the next item of the chunk starts its own clock
                    job = w.job
                    assert job is not None
                    results[job.indices[job.done]] = msg
                    job.done += 1
                    job.deadline = time.monotonic() + self.timeout_s
                    if job.done == len(job.indices):
                        w.job = None
            now = time.monotonic()
            for w in list(self._workers):
                if w.job is not None and now > w.job.deadline:
                    results[w.job.indices[w.job.done]] = TaskResult(timed_out=True)
                    self.timeouts += 1
                    requeue_rest(w)
                    w.job = None
                    self._replace(w)
                elif not w.ready and now > w.started + _START_TIMEOUT_S:
                    raise RuntimeError(f"worker for {self.fn_path} did not start in {_START_TIMEOUT_S}s")
        return [r if r is not None else TaskResult(error="lost") for r in results]


def _worker_main(argv: list[str]) -> None:
    # Keep the protocol channel private: anything the function prints goes to stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.path[:0] = [p for p in json.loads(os.environ.get("TSM_PARALLEL_SYSPATH", "[]")) if p not in sys.path]
    recv = Connection(os.dup(0), writable=False)
    send = Connection(out_fd, readable=False)
    if len(argv) > 1:
        resolve(argv[1])()
    fn = resolve(argv[0])
    send.send(_READY)
    while True:
        try:
            chunk = recv.recv()
        except (EOFError, OSError):  # parent went away
            return
        if chunk is None:
            return
        for item in chunk:  # one answer per item, so the parent can time each one
            send.send(_call(fn, item))


if __name__ == "__main__":
    # Run the importable module's copy, so results pickle as tsm.parallel.TaskResult, not __main__'s.
    from tsm.parallel import _worker_main as _main

    _main(sys.argv[1:])

