"""A job on a worker thread: sent to that thread's own child process (child.py), answered
within the timeout or the child is killed and the job recorded as a timeout.

`run_job` is what both executors run: on local threads (executor.LocalExecutor) and on Dask
workers (it is importable by name, so a cluster's workers need only vmcorekit installed and the
dumps' storage mounted at the same paths). Each thread keeps one child between jobs, so the
readers are imported once per thread, not once per dump; a child is replaced after a timeout,
a crash, `RECYCLE_AFTER` jobs, or when its resident memory passes `rss_budget_mb()` after a
job (reader caches that outlive a dump would otherwise grow it without bound; this keeps each
worker under ~300 MB at the cost of re-importing the readers every few dumps).
"""
from __future__ import annotations

import atexit
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from typing import Any

STARTUP_TIMEOUT = 120.0  # importing the readers on a loaded machine
RECYCLE_AFTER = 200
RSS_BUDGET_MB = 200  # a triage adds up to ~100 MB on top: peak stays under 300 MB


def rss_budget_mb() -> float:
    try:
        return float(os.environ.get("VMCOREKIT_FLEET_WORKER_RSS_MB", RSS_BUDGET_MB))
    except ValueError:
        return RSS_BUDGET_MB
_local = threading.local()
_children: set["Child"] = set()
_children_lock = threading.Lock()


class Child:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.jobs = 0
        self._buf = b""

    def _start(self) -> None:
        env = dict(os.environ)
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        self.proc = subprocess.Popen([sys.executable, "-m", "vmcorekit.fleet.child"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True)
        self._buf = b""
        self.jobs = 0
        with _children_lock:
            _children.add(self)
        ready = self._read(time.monotonic() + STARTUP_TIMEOUT)
        if not isinstance(ready, dict) or not ready.get("ready"):
            self.kill()
            raise RuntimeError("the triage process did not start (is vmcorekit importable by the worker?)")

    def _read(self, deadline: float) -> dict[str, Any] | None:
        """One answer line; None on timeout, {"eof": rc} when the child died."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return {"eof": self.proc.wait()}
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def kill(self) -> None:
        p, self.proc = self.proc, None
        if p is not None:
            try:
                p.kill()
            except OSError:
                pass
            p.wait()
            for f in (p.stdin, p.stdout):
                try:
                    f and f.close()
                except OSError:
                    pass
        with _children_lock:
            _children.discard(self)

    def run(self, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None or self.jobs >= RECYCLE_AFTER:
            self.kill()
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        self.jobs += 1
        t = time.perf_counter()
        try:
            self.proc.stdin.write(json.dumps(req).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            self.kill()
            return {"status": "error", "error": "the triage process went away", "seconds": 0.0}
        ans = self._read(time.monotonic() + timeout)
        if ans is None:
            self.kill()
            return {"status": "timeout", "error": f"no answer within {timeout:g} s; the reader was stopped",
                    "seconds": round(time.perf_counter() - t, 3)}
        if "eof" in ans:
            rc = ans["eof"]
            self.kill()
            how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
            return {"status": "error", "error": f"the triage process died ({how})",
                    "seconds": round(time.perf_counter() - t, 3)}
        if ans.get("rss_now_kb", 0) > rss_budget_mb() * 1024:
            self.kill()  # the next job starts a fresh one
        return ans


def _child() -> Child:
    c = getattr(_local, "child", None)
    if c is None:
        c = _local.child = Child()
    return c


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """{"op": "hash"|"triage", "paths": [...], "timeout": s, "minidump": FILE (optional)} → the
    child's answer, plus where it ran. Never raises for a bad dump: failures are answers."""
    req = {"op": job["op"], "paths": job["paths"]}
    if job.get("minidump"):
        req["minidump"] = job["minidump"]
    ans = _child().run(req, float(job.get("timeout") or 120))
    ans["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    ans["paths"] = job["paths"]
    if "id" in job:
        ans["id"] = job["id"]
    return ans


def stop_children() -> None:
    """Stop every child this process started (the end of an ingest, or exit)."""
    with _children_lock:
        children = list(_children)
    for c in children:
        c.kill()


atexit.register(stop_children)
