"""Executors: serial, local processes and Ray give the same results, in order, with the same errors.

The jobs are top-level functions of this module (the process back-end pickles them by reference;
spawned workers and Ray workers import this module). Ray tests share one local instance
(``ray.init(num_cpus=2)``, module-scoped) and skip when ray is not installed.
"""
import functools
import os
import sys
import threading
import time

import numpy as np
import pytest
import torch

from netphys._validation import NetphysError
from netphys.experiments.parallel import BACKENDS, get_executor

SEEDS = np.random.SeedSequence(20240917).spawn(6)
NOTES = sys.version_info >= (3, 11)        # PEP 678 notes name the failing job


# ----------------------------------------------------------------------------- jobs
def _draw(seed):
    """A seeded pure job: the known answer is default_rng(seed).normal(size=4)."""
    return np.random.default_rng(seed).normal(size=4)


def _finish_after(spec):
    """Job ``(index, flag, wait)``: wait for the file ``flag`` (or create it), then report the time."""
    index, flag, wait = spec
    if wait:
        deadline = time.time() + 60
        while not os.path.exists(flag):
            if time.time() > deadline:
                raise TimeoutError(f"{flag} never appeared: the jobs did not run concurrently")
            time.sleep(0.01)
        return index, time.time()
    done = time.time()                   # before the flag: the waiting job can only read a later time
    open(flag, "w").close()
    return index, done


def _span(seconds):
    t0 = time.time()
    time.sleep(seconds)
    return t0, time.time()


class JobError(RuntimeError):
    pass


class TwoArgError(Exception):
    """An exception that does not survive pickling (its __init__ needs two arguments)."""

    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


def _fail_at_3(x):
    if x == 3:
        raise JobError(f"job {x} is bad")
    return x * x


def _netphys_error(x):
    raise NetphysError(f"the 'x' parameter of _netphys_error must be positive, got {x}")


def _unpicklable_error(x):
    raise TwoArgError("cannot travel", 2)


def _torch_threads(_):
    return torch.get_num_threads()


def _identity(x, *extra):
    return x


@functools.lru_cache(maxsize=1)
def _model_and_stimuli():
    from netphys import models, stimuli

    return models.load_model("netphys_vgg16", "default"), stimuli.demo_stimuli().subsample(100, random_state=0)


def _layer_job(layer):
    """The real workload: record 20 units of one layer for 100 demo images, and their information."""
    from netphys.recording import record
    from netphys.stats import mutual_information

    model, stim = _model_and_stimuli()
    resp = record(model, stim, [layer], units=20, random_state=7)
    info = mutual_information(stim.labels, resp.values, x_discrete=True, bins=2)
    return {"layer": str(resp["layer"].values[0]), "channel": resp["channel"].values,
            "values": resp.values, "mi": info.mi}


LAYERS = ["conv1_1", "conv3_2", "conv5_3", "fc7"]


def _expected_draws():
    return [np.random.default_rng(s).normal(size=4) for s in SEEDS]


def _check_order(ex, tmp_path):
    # job 0 waits until job 2 has run (on the other worker): job 0 is the last to finish
    flag = str(tmp_path / "job2-done")
    out = ex.map(_finish_after, [(0, flag, True), (1, flag + "-unused", False), (2, flag, False)])
    assert [i for i, _ in out] == [0, 1, 2]         # returned in submission order ...
    assert out[0][1] >= out[2][1]                   # ... though job 0 finished after job 2


def _check_reraise(ex, backend):
    with pytest.raises(JobError, match=r"job 3 is bad") as info:
        ex.map(_fail_at_3, range(6))
    assert type(info.value) is JobError     # the original type and message, not a wrapper
    assert str(info.value) == "job 3 is bad"
    if NOTES:
        assert f"raised by job 3 of 6 (item 3) on backend '{backend}'" in info.value.__notes__
    with pytest.raises(NetphysError, match=r"the 'x' parameter of _netphys_error must be positive, got -1"):
        ex.map(_netphys_error, [-1])
    assert ex.map(_fail_at_3, [1, 2]) == [1, 4]        # still usable after a failure


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs, msg", [
    ({"backend": "dask"}, r"the 'backend' parameter of get_executor must be one of 'serial', 'process', "
                          r"'ray', got 'dask'"),
    ({"backend": "process", "max_workers": 0}, r"the 'max_workers' parameter of get_executor must be an "
                                               r"int >= 1, got 0"),
    ({"backend": "serial", "threads_per_worker": 0}, r"the 'threads_per_worker' parameter of get_executor "
                                                     r"must be an int >= 1, got 0"),
    ({"backend": "process", "address": "auto"}, r"the 'address' parameter of get_executor must be None "
                                                r"unless backend is 'ray', got 'auto'"),
    ({"backend": "ray", "address": 6379}, r"the 'address' parameter of get_executor must be a str such as "
                                          r"'auto', got 6379"),
])
def test_get_executor_errors(kwargs, msg):
    with pytest.raises(NetphysError, match=msg):
        get_executor(**kwargs)


def test_backends():
    assert BACKENDS == ("serial", "process", "ray")


def test_ray_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)      # import ray -> ImportError
    with pytest.raises(NetphysError, match=r"backend='ray' needs the 'ray' package, which is not installed; "
                                           r"pip install 'netphys\[ray\]'"):
        get_executor("ray")


# ----------------------------------------------------------------------------- serial
def test_serial_known_answers_order_and_errors():
    with get_executor("serial") as ex:
        assert ex.map(_fail_at_3, [5, 0, 2]) == [25, 0, 4]
        got = ex.map(_draw, SEEDS)
        for g, e in zip(got, _expected_draws()):
            np.testing.assert_array_equal(g, e)
        assert ex.map(_identity, []) == []
        _check_reraise(ex, "serial")


def test_serial_sets_and_restores_torch_threads():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with get_executor("serial", threads_per_worker=1) as ex:
            assert ex.map(_torch_threads, [0, 1]) == [1, 1]
        assert torch.get_num_threads() == 2
        with get_executor("serial", threads_per_worker=None) as ex:
            assert ex.map(_torch_threads, [0]) == [2]
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- process
@pytest.fixture(scope="module")
def process_ex():
    with get_executor("process", max_workers=2, threads_per_worker=1) as ex:
        yield ex


@pytest.mark.timeout(120)
def test_process_matches_serial_in_order(process_ex, tmp_path):
    got = process_ex.map(_draw, SEEDS)
    for g, e in zip(got, _expected_draws()):
        np.testing.assert_array_equal(g, e)
    _check_order(process_ex, tmp_path)
    assert process_ex.map(_torch_threads, [0, 1]) == [1, 1]


@pytest.mark.timeout(120)
def test_process_reraises_original_exception(process_ex):
    _check_reraise(process_ex, "process")


@pytest.mark.timeout(120)
def test_process_broken_pool_is_explained_and_replaced(process_ex):
    with pytest.raises(NetphysError, match=r"a worker process of backend='process' died while running the jobs "
                                           r"\(killed, out of memory, os._exit\), or sent back a result or "
                                           r"exception that does not unpickle here"):
        process_ex.map(_unpicklable_error, [0])
    assert process_ex.map(_fail_at_3, [2]) == [4]       # a fresh pool


def test_process_rejects_what_does_not_pickle():
    with get_executor("process", max_workers=1) as ex:      # rejected before any worker starts
        with pytest.raises(NetphysError, match=r"the 'fn' parameter of ProcessExecutor.map must be picklable, "
                                               r"got <function .*<lambda>.*; backend='process' sends jobs with "
                                               r"pickle: use a top-level function"):
            ex.map(lambda x: x, [1])
        with pytest.raises(NetphysError, match=r"the 'items' parameter of ProcessExecutor.map must be "
                                               r"picklable, got 'item 1: <unlocked _thread.lock"):
            ex.map(_identity, [1, threading.Lock()])
        assert ex._pool is None
    ex = get_executor("process", max_workers=1)
    assert ex._ensure() is ex._pool is not None              # a pool; its workers start on submit
    ex.close()                                               # alias of shutdown
    ex.close()
    assert ex._pool is None


# ----------------------------------------------------------------------------- ray
@pytest.fixture(scope="module")
def ray_ex():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'netphys[ray]')")
    was_running = ray.is_initialized()
    with get_executor("ray", max_workers=2, threads_per_worker=1) as ex:
        assert ray.is_initialized()
        if not was_running:
            assert ray.cluster_resources()["CPU"] == 2      # the local instance it started
        yield ex
    assert ray.is_initialized() == was_running              # shut down only what it started


@pytest.mark.timeout(120)
def test_ray_matches_serial_in_order(ray_ex, tmp_path):
    got = ray_ex.map(_draw, SEEDS)
    for g, e in zip(got, _expected_draws()):
        np.testing.assert_array_equal(g, e)
    _check_order(ray_ex, tmp_path)
    assert ray_ex.map(lambda x: 2 * x, [1, 2, 3]) == [2, 4, 6]     # cloudpickle: lambdas travel
    assert ray_ex.map(_identity, []) == []


@pytest.mark.timeout(120)
def test_ray_reraises_original_exception(ray_ex):
    _check_reraise(ray_ex, "ray")
    # an exception that cannot be rebuilt here still arrives, with the worker's message
    with pytest.raises(NetphysError, match=r"(?s)job 0 failed on backend 'ray': .*cannot travel"):
        ray_ex.map(_unpicklable_error, [0])


@pytest.mark.timeout(120)
def test_ray_rejects_what_does_not_pickle(ray_ex):
    with pytest.raises(NetphysError, match=r"the 'items' parameter of RayExecutor.map must be picklable, "
                                           r"got 'item 1: <unlocked _thread.lock"):
        ray_ex.map(_identity, [1, threading.Lock(), 3])
    with pytest.raises(NetphysError, match=r"the 'fn' parameter of RayExecutor.map must be picklable, "
                                           r"got functools.partial"):
        ray_ex.map(functools.partial(_identity, threading.Lock()), [1])
    assert ray_ex.map(_identity, [4]) == [4]


@pytest.mark.timeout(120)
def test_ray_threads_nesting_and_in_flight_bound(ray_ex):
    import ray

    assert ray_ex.map(_torch_threads, [0, 1, 2]) == [1, 1, 1]
    # a second executor uses the running instance and leaves it running
    with get_executor("ray", threads_per_worker=2) as ex2:
        assert ex2.map(_torch_threads, [0, 1]) == [2, 2]
    assert ray.is_initialized()
    with get_executor("ray", max_workers=1) as ex1:          # one job in flight at a time
        spans = sorted(ex1.map(_span, [0.2, 0.2, 0.2]))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert ray_ex.map(_identity, [5]) == [5]
    if ray.cluster_resources()["CPU"] == 2:
        with pytest.raises(NetphysError, match=r"the 'threads_per_worker' parameter of RayExecutor must be at "
                                               r"most the 2 CPUs of the Ray instance, got 3"):
            get_executor("ray", threads_per_worker=3)
    ray_ex2 = get_executor("ray")
    ray_ex2.close()                                          # alias of shutdown
    with pytest.raises(NetphysError, match=r"this RayExecutor has been shut down"):
        ray_ex2.map(_identity, [1])
    assert ray.is_initialized()


def test_ray_init_arguments(monkeypatch):
    """Local start: num_cpus = max_workers * threads, no dashboard; address: connect; both shut down."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'netphys[ray]')")
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: calls.append(("init", a, k)))
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append(("shutdown",)))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64.0})
    with get_executor("ray", 3, threads_per_worker=2):
        pass
    with get_executor("ray", address="auto"):
        pass
    path = calls[0][2].pop("runtime_env")["env_vars"]["PYTHONPATH"].split(os.pathsep)
    assert path == [p or os.getcwd() for p in sys.path]     # local workers import like spawned ones
    assert calls == [("init", (), {"num_cpus": 6, "include_dashboard": False}), ("shutdown",),
                     ("init", (), {"address": "auto"}), ("shutdown",)]


# ----------------------------------------------------------------------------- real workload
@pytest.fixture(scope="module")
def serial_layers():
    with get_executor("serial") as ex:
        return ex.map(_layer_job, LAYERS)


def _assert_same_layers(got, ref):
    assert [g["layer"] for g in got] == LAYERS
    for g, r in zip(got, ref):
        assert g["values"].shape == (100, 20)
        np.testing.assert_array_equal(g["channel"], r["channel"])
        np.testing.assert_array_equal(g["values"], r["values"])
        np.testing.assert_array_equal(g["mi"], r["mi"])


def test_serial_layer_jobs_are_distinct(serial_layers):
    assert [r["layer"] for r in serial_layers] == LAYERS
    assert not np.allclose(serial_layers[0]["mi"], serial_layers[-1]["mi"])
    assert all(np.all(np.isfinite(r["mi"])) for r in serial_layers)


@pytest.mark.timeout(180)
def test_process_layer_jobs_identical_to_serial(process_ex, serial_layers):
    _assert_same_layers(process_ex.map(_layer_job, LAYERS), serial_layers)


@pytest.mark.timeout(180)
def test_ray_layer_jobs_identical_to_serial(ray_ex, serial_layers):
    _assert_same_layers(ray_ex.map(_layer_job, LAYERS), serial_layers)
