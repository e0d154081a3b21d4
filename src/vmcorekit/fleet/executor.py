"""Where ingest's jobs run. Both executors run `worker.run_job` and yield its answers as they
complete; the answers are small fact records (never dump bytes), so the index is the same
whichever runs them.

    LocalExecutor(n)              n threads here, each with its own child process
    DaskExecutor(address=...)     an existing Dask distributed cluster (tcp://host:port): its
                                  workers read the dumps by path from shared storage
    DaskExecutor(local=n)         a Dask LocalCluster of n single-threaded worker processes
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from ..errors import FleetError
from .worker import run_job, stop_children


class LocalExecutor:
    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self.name = f"local:{self.workers}"
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="vmcorekit-fleet")

    def map_unordered(self, jobs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        futures = [self._pool.submit(run_job, j) for j in jobs]
        try:
            for f in as_completed(futures):
                yield f.result()
        finally:
            for f in futures:
                f.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        stop_children()
        self._pool.shutdown(wait=True)


class DaskExecutor:
    def __init__(self, address: str | None = None, local: int | None = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise FleetError("a Dask cluster needs the 'distributed' package: pip install 'vmcorekit[fleet]'") from None
        self._cluster = None
        try:
            if address is not None:
                self._client = Client(address)  # waits distributed.comm.timeouts.connect
                self.name = f"dask:{address}"
            else:
                n = max(1, local or 1)
                self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                             dashboard_address=None, host="127.0.0.1")
                self._client = Client(self._cluster)
                self.name = f"dask-local:{n}"
        except (OSError, ValueError, TypeError) as e:  # unreachable, or not an address
            if self._cluster is not None:
                self._cluster.close()
            what = f"the Dask scheduler {address}" if address else "a Dask LocalCluster"
            raise FleetError(f"cannot reach {what}: {' '.join(str(e).split())}") from None

    def map_unordered(self, jobs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        from distributed import as_completed as dask_completed
        by_future = {self._client.submit(run_job, j, pure=False, retries=1): j for j in jobs}
        futures = list(by_future)
        if not futures:
            return
        try:
            for f in dask_completed(futures):
                try:
                    yield f.result()
                except Exception as e:  # the job's worker was lost twice: an error row, not a stop
                    from .facts import one_line
                    job = by_future[f]
                    yield {"status": "error", "error": f"cluster: {type(e).__name__}: {one_line(e)}",
                           "paths": job["paths"], "id": job.get("id"), "seconds": 0.0}
        finally:
            for f in futures:
                f.cancel()

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()
