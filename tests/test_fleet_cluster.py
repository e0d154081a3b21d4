"""Fleet ingest on a real Dask cluster: a scheduler and two worker processes on loopback,
started here and stopped here; the index they build equals the local one row for row
(timings and where each job ran left out)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("distributed")

from test_fleet import built, env, rows_of  # noqa: E402,F401 - `built`: the locally built index fixture


class _Cluster:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{len(self.procs)}.log", "wb")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen([sys.executable, "-m", "dask", *args], env=env(), stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=self.folder)
        log.close()
        self.procs.append(p)
        return p

    def start(self, workers: int = 2) -> str:
        info = self.folder / "scheduler.json"
        self._spawn("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info))
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            assert self.procs[0].poll() is None, (self.folder / "0.log").read_text()
            time.sleep(0.1)
        self.address = json.loads(info.read_text())["address"]
        for _ in range(workers):
            self._spawn("worker", self.address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard",
                        "--no-nanny", "--death-timeout", "30")
        from distributed import Client
        with Client(self.address, timeout="30s") as c:
            c.wait_for_workers(workers, timeout=60)
        return self.address

    def stop(self) -> None:
        # Each process leads its own group (its triage children in it): stop the groups.
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for p in reversed(self.procs):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    c = _Cluster(tmp_path)
    try:
        yield c.start(2)
    finally:
        c.stop()


def test_cluster_index_equals_local_index(built: tuple[Path, Path, dict[str, Any]], cluster: str,  # noqa: F811
                                          tmp_path: Path) -> None:
    d, local_ix, local_summary = built
    ix = tmp_path / "cluster.duckdb"
    r = subprocess.run([sys.executable, "-m", "vmcorekit", "fleet", "ingest", str(d), "--index", str(ix),
                        "--scheduler", cluster, "--json"], env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["executor"] == f"dask:{cluster}"
    assert (s["seen"], s["new"], s["failed"]) == (local_summary["seen"], local_summary["new"], local_summary["failed"])
    local, remote = rows_of(local_ix), rows_of(ix)
    assert sorted(local) == sorted(remote)
    for path in local:
        assert remote[path] == local[path], path
    with __import__("vmcorekit.fleet.index", fromlist=["connect"]).connect(str(ix), read_only=True) as con:
        workers = {w.rsplit(":", 1)[1] for (w,) in con.execute("SELECT worker FROM dumps WHERE worker IS NOT NULL")
                   .fetchall()}
    assert str(os.getpid()) not in workers and len(workers) >= 1  # the work ran in the cluster's processes
    # a second run over the cluster adds nothing either
    r = subprocess.run([sys.executable, "-m", "vmcorekit", "fleet", "ingest", str(d), "--index", str(ix),
                        "--scheduler", cluster, "--json"], env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and json.loads(r.stdout)["new"] == 0, r.stderr


def test_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = subprocess.run([sys.executable, "-m", "vmcorekit", "fleet", "ingest", str(tmp_path), "--index",
                        str(tmp_path / "ix.duckdb"), "--scheduler", f"tcp://127.0.0.1:{port}"],
                       env={**env(), "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("vmcorekit: error: ") and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_cluster_ingest_keeps_minidumps(cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--keep-minidump on the cluster: each minidump written by the worker that triaged it."""
    from test_minidump import check_kept, keep_minidump_fleet
    root = keep_minidump_fleet(tmp_path / "fleet")
    keep, ix = root / "minidumps", tmp_path / "ix.duckdb"
    r = subprocess.run([sys.executable, "-m", "vmcorekit", "fleet", "ingest", str(root), "--index", str(ix),
                        "--scheduler", cluster, "--keep-minidump", str(keep), "--json"],
                       env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    check_kept(root, ix, keep, json.loads(r.stdout), capsys)
