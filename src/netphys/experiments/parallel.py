"""Run independent jobs (e.g. the networks of a training sweep) serially, in local processes, or on a
Dask or Ray cluster, behind one small interface.

>>> with get_executor("process", max_workers=2) as ex:     # doctest: +SKIP
...     results = ex.map(train_one, specs)

Every back-end returns results in the order of the inputs. Jobs must be picklable top-level
functions with picklable arguments (they cross process boundaries); each job should take its own
seed (spawned by the caller), never rely on a global one.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
from typing import Callable, Iterable

from .._validation import NetphysError, check_choice, check_int, param_error

log = logging.getLogger(__name__)

__all__ = ["get_executor", "SerialExecutor", "ProcessExecutor", "DaskExecutor", "RayExecutor", "BACKENDS"]

BACKENDS = ("serial", "process", "dask", "ray")


def _init_worker(threads: int | None):
    """Process initialiser: bound the intra-op threads of each worker (no oversubscription)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
        os.environ["OMP_NUM_THREADS"] = str(int(threads))


class SerialExecutor:
    """Run jobs one after the other in this process (debugging, tests, one core)."""

    backend = "serial"

    def __init__(self, max_workers: int | None = None, threads_per_worker: int | None = None):
        self.max_workers = 1
        self.threads_per_worker = threads_per_worker

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
        return False

    def map(self, fn: Callable, items: Iterable, *, progress: bool = False, desc: str = "jobs") -> list:
        from tqdm.auto import tqdm

        items = list(items)
        out = []
        for it in tqdm(items, desc=desc, disable=not progress):
            out.append(fn(it))
        return out

    def shutdown(self):
        pass


class ProcessExecutor(SerialExecutor):
    """Local worker processes (``concurrent.futures.ProcessPoolExecutor``, ``spawn`` start method).

    ``spawn`` (not ``fork``) because forking a process whose PyTorch thread pool is already running
    can deadlock; each worker imports the job's module afresh and sets ``threads_per_worker``
    intra-op threads.
    """

    backend = "process"

    def __init__(self, max_workers: int | None = None, threads_per_worker: int | None = 1):
        self.max_workers = max_workers or max(1, (os.cpu_count() or 1))
        self.threads_per_worker = threads_per_worker
        self._pool: cf.ProcessPoolExecutor | None = None

    def _ensure(self):
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(max_workers=self.max_workers,
                                                mp_context=mp.get_context("spawn"),
                                                initializer=_init_worker,
                                                initargs=(self.threads_per_worker,))
        return self._pool

    def map(self, fn: Callable, items: Iterable, *, progress: bool = False, desc: str = "jobs") -> list:
        from tqdm.auto import tqdm

        items = list(items)
        pool = self._ensure()
        futures = [pool.submit(fn, it) for it in items]
        index = {f: i for i, f in enumerate(futures)}
        out: list = [None] * len(items)
        bar = tqdm(total=len(items), desc=desc, disable=not progress)
        try:
            for f in cf.as_completed(futures):
                out[index[f]] = f.result()
                bar.update(1)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        finally:
            bar.close()
        return out

    def shutdown(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor(SerialExecutor):
    """A Dask ``distributed`` client: a local cluster by default, or ``address`` of a scheduler."""

    backend = "dask"

    def __init__(self, max_workers: int | None = None, threads_per_worker: int | None = 1,
                 address: str | None = None):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise NetphysError("backend='dask' needs the 'dask[distributed]' package, which is not "
                               "installed; pip install 'dask[distributed]' or use backend='process'") from None
        self.max_workers = max_workers
        self.threads_per_worker = threads_per_worker
        if address is None:
            self._cluster = LocalCluster(n_workers=max_workers, threads_per_worker=1, processes=True)
            self._client = Client(self._cluster)
        else:
            self._cluster = None
            self._client = Client(address)
        if threads_per_worker:
            self._client.run(_init_worker, threads_per_worker)

    def map(self, fn: Callable, items: Iterable, *, progress: bool = False, desc: str = "jobs") -> list:
        items = list(items)
        futures = self._client.map(fn, items, pure=False)
        return self._client.gather(futures)

    def shutdown(self):
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


class RayExecutor(SerialExecutor):
    """Ray tasks (``ray.init()`` locally, or ``address`` of a running cluster)."""

    backend = "ray"

    def __init__(self, max_workers: int | None = None, threads_per_worker: int | None = 1,
                 address: str | None = None):
        try:
            import ray
        except ImportError:
            raise NetphysError("backend='ray' needs the 'ray' package, which is not installed; "
                               "pip install ray or use backend='process'") from None
        self._ray = ray
        self.max_workers = max_workers
        self.threads_per_worker = threads_per_worker
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=max_workers, ignore_reinit_error=True)

    def map(self, fn: Callable, items: Iterable, *, progress: bool = False, desc: str = "jobs") -> list:
        ray = self._ray
        threads = self.threads_per_worker

        def call(it):
            _init_worker(threads)
            return fn(it)

        remote = ray.remote(num_cpus=threads or 1)(call)
        return ray.get([remote.remote(it) for it in items])


def get_executor(backend: str = "process", max_workers: int | None = None, *,
                 threads_per_worker: int | None = 1, address: str | None = None):
    """An executor with ``map(fn, items) -> list`` in input order; use it as a context manager.

    Parameters
    ----------
    backend : {"serial", "process", "dask", "ray"}, default "process"
        ``"process"``: local processes; ``"dask"`` / ``"ray"``: a cluster (the packages are
        optional and a clear error says how to install them).
    max_workers : int, optional
        Parallel jobs (default: the number of CPUs for ``"process"``).
    threads_per_worker : int, optional, default 1
        PyTorch intra-op threads per job.
    address : str, optional
        Scheduler / cluster address for ``"dask"`` and ``"ray"``.

    Raises
    ------
    NetphysError
        For an unknown back-end, a bad ``max_workers``, or a back-end whose package is missing.
    """
    func = "get_executor"
    check_choice(backend, "backend", func, BACKENDS)
    if max_workers is not None:
        max_workers = check_int(max_workers, "max_workers", func, min_value=1)
    if threads_per_worker is not None:
        threads_per_worker = check_int(threads_per_worker, "threads_per_worker", func, min_value=1)
    if address is not None and backend not in ("dask", "ray"):
        raise param_error("address", func, "None unless backend is 'dask' or 'ray'", address)
    if backend == "serial":
        return SerialExecutor(max_workers, threads_per_worker)
    if backend == "process":
        return ProcessExecutor(max_workers, threads_per_worker)
    if backend == "dask":
        return DaskExecutor(max_workers, threads_per_worker, address)
    return RayExecutor(max_workers, threads_per_worker, address)
