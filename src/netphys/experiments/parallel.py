"""Run independent jobs serially, in local processes, or on a Ray cluster, behind one interface.

The pieces of an experiment that do not depend on each other (networks x realisations x layers,
the members of a training sweep) are jobs: a picklable function applied to one item each.

>>> with get_executor("process", max_workers=2) as ex:     # doctest: +SKIP
...     results = ex.map(train_one, specs)

Every back-end returns ``map``'s results in the order of the items, whatever order the jobs
finish in, so ``serial``, ``process`` and ``ray`` give identical results for jobs that carry their
own seed (spawned by the caller with :class:`numpy.random.SeedSequence`; never rely on a global
one). Each job runs with ``threads_per_worker`` PyTorch intra-op threads, set in the worker.

An exception raised by a job is re-raised in the caller with its original type and message (with
a note naming the job on Python >= 3.11); the jobs not yet started are cancelled. A function or an
item that cannot be sent to a worker raises :class:`~netphys.NetphysError` before anything runs.

Back-ends
---------
``"serial"``
    One job after the other in this process (debugging, one core).
``"process"``
    Local ``spawn`` worker processes. Functions must be importable top-level functions and
    items must pickle (standard :mod:`pickle`).
``"ray"``
    Ray tasks (``pip install 'netphys[ray]'``). Functions and items are sent with cloudpickle,
    so lambdas and closures also work. Without ``address`` and without a running Ray instance,
    the executor starts a local one (``num_cpus = max_workers * threads_per_worker``, no
    dashboard) and shuts it down on exit; an instance that was already running in this process
    (``ray.init(...)`` called by you, with whatever ``runtime_env`` or ``namespace`` you need) is
    used as it is and left running. Workers of a local instance started here import from this
    process's ``sys.path``, as spawned processes do, so jobs defined next to your script unpickle.

Running a sweep on a Ray cluster
--------------------------------
1. Install the same netphys version, with ``pip install 'netphys[ray]'``, on every node; put the
   data and cache directories on a file system that every node sees. Job functions must be
   importable on the workers: keep them in an installed package, or call
   ``ray.init(address="auto", runtime_env={"py_modules": [my_jobs]})`` yourself before creating
   the executor (it then uses that connection).
2. Start the cluster: ``ray start --head`` on the head node, then
   ``ray start --address=<head-ip>:6379`` on each worker node (or ``ray up cluster.yaml``).
3. On a node of the cluster, run the driver with ``address="auto"``::

       from netphys.experiments.parallel import get_executor

       with get_executor("ray", address="auto", threads_per_worker=4) as ex:
           results = ex.map(train_one, specs)      # each job reserves 4 of the cluster's CPUs

   or submit the same script with ``ray job submit --address http://<head-ip>:8265 -- python
   sweep.py``. Leaving the ``with`` block disconnects the driver; the cluster keeps running.
   ``max_workers`` (optional on a cluster) caps the jobs in flight; by default Ray schedules as
   many as the cluster's CPUs allow. An experiment run with ``backend="ray"`` uses the instance
   already running in the process, so call ``ray.init(address="auto")`` before it to send its
   pieces to the cluster (or hand an open executor to a runner that accepts one).
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import pickle
import sys
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable

from .._validation import NetphysError, check_choice, check_int, param_error

log = logging.getLogger(__name__)

__all__ = ["get_executor", "SerialExecutor", "ProcessExecutor", "RayExecutor", "BACKENDS"]

BACKENDS = ("serial", "process", "ray")


def _init_worker(threads: int | None):
    """Bound the intra-op threads of the current worker (no oversubscription)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
        os.environ["OMP_NUM_THREADS"] = str(int(threads))


def _run_job(fn: Callable, item, threads: int | None):
    """What a Ray worker runs: set the thread count, then the job (Ray reuses workers)."""
    _init_worker(threads)
    return fn(item)


def _short(obj, width: int = 80) -> str:
    text = repr(obj)
    return text if len(text) <= width else text[:width - 3] + "..."


def _note(exc: BaseException, index: int, n: int, item, backend: str) -> BaseException:
    """Name the failing job on the exception (PEP 678 notes; Python >= 3.11)."""
    add = getattr(exc, "add_note", None)
    if add is not None:
        add(f"raised by job {index} of {n} (item {_short(item)}) on backend {backend!r}")
    return exc


class SerialExecutor:
    """Run jobs one after the other in this process (debugging, tests, one core).

    Parameters
    ----------
    max_workers : int, optional
        Ignored (always 1).
    threads_per_worker : int, optional
        PyTorch intra-op threads while :meth:`map` runs (the previous count is restored
        afterwards); ``None`` leaves the count alone.
    """

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
        """Apply ``fn`` to every item; return the results in the order of ``items``.

        Parameters
        ----------
        fn : callable
            A function of one argument.
        items : iterable
            The jobs' arguments.
        progress : bool, default False
            Show a tqdm bar.
        desc : str, default "jobs"
            The bar's label.

        Returns
        -------
        list
            ``[fn(item) for item in items]``.

        Raises
        ------
        Exception
            The first exception a job raises, with its original type.
        NetphysError
            When ``fn`` or an item cannot be sent to a worker (parallel back-ends).
        """
        from tqdm.auto import tqdm

        items = list(items)
        threads = self.threads_per_worker
        if threads:
            import torch

            before = torch.get_num_threads()
            torch.set_num_threads(int(threads))
        out = []
        try:
            for i, it in enumerate(tqdm(items, desc=desc, disable=not progress)):
                try:
                    out.append(fn(it))
                except Exception as exc:
                    _note(exc, i, len(items), it, self.backend)
                    raise
        finally:
            if threads:
                torch.set_num_threads(before)
        return out

    def shutdown(self):
        """Release the back-end's resources (nothing to do for ``serial``)."""

    def close(self):
        """Same as :meth:`shutdown` (idempotent)."""
        self.shutdown()


def _check_pickles(fn: Callable, items: list, func: str, dumps: Callable, fix: str):
    """Raise a templated NetphysError if ``fn`` or an item cannot be serialised with ``dumps``."""
    try:
        dumps(fn)
    except Exception as exc:
        raise param_error("fn", func, "picklable", fn, f"{fix} ({type(exc).__name__}: {exc})") from None
    for i, it in enumerate(items):
        try:
            dumps(it)
        except Exception as exc:
            raise param_error("items", func, "picklable", f"item {i}: {_short(it)}",
                              f"{fix} ({type(exc).__name__}: {exc})") from None


class ProcessExecutor(SerialExecutor):
    """Local worker processes (``concurrent.futures.ProcessPoolExecutor``, ``spawn`` start method).

    ``spawn`` (not ``fork``) because forking a process whose PyTorch thread pool is already running
    can deadlock; each worker imports the job's module afresh and sets ``threads_per_worker``
    intra-op threads. The pool starts on the first :meth:`map` and is reused until
    :meth:`shutdown` (or the end of the ``with`` block).

    Parameters
    ----------
    max_workers : int, optional
        Worker processes (default: the number of CPUs).
    threads_per_worker : int, optional, default 1
        PyTorch intra-op threads in each worker.
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
        if not items:
            return []
        _check_pickles(fn, items, "ProcessExecutor.map", pickle.dumps,
                       "backend='process' sends jobs with pickle: use a top-level function and "
                       "plain arguments, or backend='ray' (cloudpickle)")
        pool = self._ensure()
        futures = [pool.submit(fn, it) for it in items]
        index = {f: i for i, f in enumerate(futures)}
        out: list = [None] * len(items)
        bar = tqdm(total=len(items), desc=desc, disable=not progress)
        try:
            for f in cf.as_completed(futures):
                i = index[f]
                try:
                    out[i] = f.result()
                except BrokenProcessPool as err:
                    self._pool = None          # unusable: the next map starts a fresh pool
                    raise NetphysError(
                        f"a worker process of backend='process' died while running the jobs (killed, out "
                        f"of memory, os._exit), or sent back a result or exception that does not unpickle "
                        f"here (e.g. an exception class whose __init__ takes extra arguments); the next map "
                        f"starts fresh workers ({err})") from err
                except Exception as exc:
                    _note(exc, i, len(items), items[i], self.backend)
                    raise
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


class RayExecutor(SerialExecutor):
    """Ray tasks: a local instance started on demand, the running one, or the cluster at ``address``.

    Parameters
    ----------
    max_workers : int, optional
        Jobs in flight at once. For a local instance this executor starts, also sets its size
        (``num_cpus = max_workers * threads_per_worker``; default: the number of CPUs).
    threads_per_worker : int, optional, default 1
        PyTorch intra-op threads in each job; each Ray task reserves that many CPUs.
    address : str, optional
        A cluster to connect to (``"auto"``, ``"ray://<head>:10001"``, ``"<head>:6379"``).

    Notes
    -----
    Only what this executor started is shut down (:meth:`shutdown`, or the end of the ``with``
    block): a local instance is stopped, a cluster connection is closed, and an instance that was
    already initialised in this process is left alone.
    """

    backend = "ray"

    def __init__(self, max_workers: int | None = None, threads_per_worker: int | None = 1,
                 address: str | None = None):
        try:
            import ray
        except ImportError:
            raise NetphysError("backend='ray' needs the 'ray' package, which is not installed; "
                               "pip install 'netphys[ray]' (or ray) or use backend='process'") from None
        self._ray = ray
        self.max_workers = max_workers
        self.threads_per_worker = threads_per_worker
        self.address = address
        cpus_per_job = threads_per_worker or 1
        self._owner = False
        if ray.is_initialized():
            log.info("using the Ray instance already running in this process")
        elif address is not None:
            ray.init(address=address)
            self._owner = True
            log.info("connected to the Ray cluster at %r", address)
        else:
            num_cpus = (max_workers or os.cpu_count() or 1) * cpus_per_job
            # like spawned processes, local workers import from this process's sys.path (so jobs
            # defined in a module next to the caller's script or test unpickle there)
            path = os.pathsep.join(p or os.getcwd() for p in sys.path)
            ray.init(num_cpus=num_cpus, include_dashboard=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
            self._owner = True
            log.info("started a local Ray instance with %d CPUs", num_cpus)
        total = ray.cluster_resources().get("CPU", 0)
        if total < cpus_per_job:
            msg = (f"the 'threads_per_worker' parameter of RayExecutor must be at most the {total:g} "
                   f"CPUs of the Ray instance, got {cpus_per_job}; each job reserves that many CPUs, "
                   f"so none would ever be scheduled")
            if address is None:                     # a local instance cannot grow: fail, don't hang
                raise NetphysError(msg + " (pass address=... for an autoscaling cluster)")
            log.warning("%s, unless the cluster autoscales", msg)
        self._task = ray.remote(_run_job).options(num_cpus=cpus_per_job)

    def map(self, fn: Callable, items: Iterable, *, progress: bool = False, desc: str = "jobs") -> list:
        from tqdm.auto import tqdm

        ray = self._ray
        if self._task is None:
            raise NetphysError("this RayExecutor has been shut down; create a new one with "
                               "get_executor('ray', ...)")
        items = list(items)
        if not items:
            return []
        fix = "Ray sends jobs with cloudpickle: pass data that pickles (arrays, paths, plain objects)"
        try:
            fn_ref = ray.put(fn)                    # serialised once, not once per job
        except Exception as exc:
            raise param_error("fn", "RayExecutor.map", "picklable", fn,
                              f"{fix} ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        limit = self.max_workers or len(items)
        pending: dict = {}                          # ObjectRef -> index
        out: list = [None] * len(items)
        nxt = 0
        bar = tqdm(total=len(items), desc=desc, disable=not progress)

        def submit(i):
            try:
                ref = self._task.remote(fn_ref, items[i], self.threads_per_worker)
            except TypeError as exc:                # Ray: "Could not serialize the argument ..."
                raise param_error("items", "RayExecutor.map", "picklable", f"item {i}: {_short(items[i])}",
                                  f"{fix} ({str(exc).splitlines()[0]})") from None
            pending[ref] = i

        try:
            while nxt < len(items) and len(pending) < limit:
                submit(nxt)
                nxt += 1
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i = pending.pop(ref)
                    out[i] = self._get(ref, i, items)
                    bar.update(1)
                    if nxt < len(items):
                        submit(nxt)
                        nxt += 1
        except BaseException:
            for ref in pending:
                try:
                    ray.cancel(ref)
                except Exception:                   # already finished or gone: nothing to cancel
                    pass
            raise
        finally:
            bar.close()
        return out

    def _get(self, ref, i: int, items: list):
        """The result of one task; a job's exception comes back with its original type."""
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, Exception):
                raise _note(cause, i, len(items), items[i], self.backend) from err
            raise _note(NetphysError(f"job {i} failed on backend 'ray': {err}"), i, len(items),
                        items[i], self.backend) from err
        except ray.exceptions.RayError as err:      # e.g. an exception that did not unpickle here
            raise _note(NetphysError(f"job {i} failed on backend 'ray': {err}"), i, len(items),
                        items[i], self.backend) from err

    def shutdown(self):
        """Stop the local instance / close the connection this executor opened; idempotent."""
        self._task = None
        if self._owner:
            self._owner = False
            self._ray.shutdown()


def get_executor(backend: str = "process", max_workers: int | None = None, *,
                 threads_per_worker: int | None = 1, address: str | None = None):
    """An executor with ``map(fn, items) -> list`` in input order; use it as a context manager.

    Parameters
    ----------
    backend : {"serial", "process", "ray"}, default "process"
        ``"serial"``: this process; ``"process"``: local processes; ``"ray"``: Ray tasks on a local
        instance or a cluster (the package is optional; a clear error says how to install it).
    max_workers : int, optional
        Parallel jobs (default: the number of CPUs; on a Ray cluster, as many as it schedules).
    threads_per_worker : int, optional, default 1
        PyTorch intra-op threads per job (``None``: leave the count alone).
    address : str, optional
        Ray cluster address (``"auto"`` on a cluster node); only for ``backend="ray"``.

    Returns
    -------
    SerialExecutor or ProcessExecutor or RayExecutor
        ``with get_executor(...) as ex: results = ex.map(fn, items)``; leaving the block (or
        ``ex.shutdown()``) frees the workers.

    Raises
    ------
    NetphysError
        For an unknown back-end, a bad ``max_workers`` / ``threads_per_worker``, an ``address``
        without ``backend="ray"``, or ``backend="ray"`` without the ``ray`` package.
    """
    func = "get_executor"
    check_choice(backend, "backend", func, BACKENDS)
    if max_workers is not None:
        max_workers = check_int(max_workers, "max_workers", func, min_value=1)
    if threads_per_worker is not None:
        threads_per_worker = check_int(threads_per_worker, "threads_per_worker", func, min_value=1)
    if address is not None and backend != "ray":
        raise param_error("address", func, "None unless backend is 'ray'", address)
    if address is not None and not isinstance(address, str):
        raise param_error("address", func, "a str such as 'auto'", address)
    if backend == "serial":
        return SerialExecutor(max_workers, threads_per_worker)
    if backend == "process":
        return ProcessExecutor(max_workers, threads_per_worker)
    return RayExecutor(max_workers, threads_per_worker, address)
