#!/usr/bin/env python
"""Benchmark: netphys TwoNN against DADApy and scikit-dimension on the same data, in the same run.

Data: ``N`` points on a curved ``d``-dimensional manifold in ``D`` dimensions,
``X = tanh(Z W)``, ``Z ~ N(0, I_d)``, ``W ~ N(0, 1/d)`` of shape (d, D) (default d = 10).

For every (N, D) the script times (best of ``--repeat``) each implementation end to end (neighbour
search + fit) and prints a table with the time relative to netphys (``t / t_netphys`` > 1: netphys is
faster) and the ID with its relative difference from netphys' value.

Peers are optional. A peer that cannot be imported is skipped. DADApy 0.3.4 requires numpy < 2; to
compare it from an environment with numpy 2, point ``--peer-python`` at the interpreter of a second
environment (``python -m venv /tmp/ref && /tmp/ref/bin/pip install dadapy scikit-dimension``): peers
then run there, on the same data passed through a temporary ``.npy`` file, timed inside that process.

Examples
--------
    python bench/dimension.py --quick
    python bench/dimension.py --peer-python /tmp/netphys-dadapy-venv/bin/python
    python bench/dimension.py -n 5000 10000 -D 4096 --repeat 3 --csv out.csv
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

PEERS = ("dadapy", "dadapy_maxk2", "skdim")
PEER_LABELS = {
    "netphys": "netphys TwoNN",
    "dadapy": "DADApy compute_id_2NN",
    "dadapy_maxk2": "DADApy (maxk=2)",
    "skdim": "skdim TwoNN",
}


def make_data(n: int, D: int, d: int = 10, seed: int = 0) -> np.ndarray:
    """``n`` points on a curved ``d``-dimensional manifold embedded in ``D`` dimensions."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    W = rng.standard_normal((d, D)) / np.sqrt(d)
    return np.tanh(Z @ W)


def _peer_fn(name: str):
    """A callable X -> ID for a peer, or raise ImportError."""
    if name in ("dadapy", "dadapy_maxk2"):
        from dadapy import Data

        maxk = 2 if name == "dadapy_maxk2" else None

        def run(X):
            return float(Data(X, maxk=maxk, verbose=False).compute_id_2NN()[0])

        return run
    if name == "skdim":
        import skdim

        return lambda X: float(skdim.id.TwoNN().fit(X).dimension_)
    raise ValueError(name)


def _netphys_fn():
    from netphys.stats.dimension import TwoNN

    return lambda X: float(TwoNN().fit(X).dimension_)


def _time(fn, X, repeat: int) -> tuple[float, float]:
    best, value = np.inf, np.nan
    for _ in range(repeat):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = fn(X)
        best = min(best, time.perf_counter() - t0)
    return best, value


def _worker(path: str, peers: list[str], repeat: int) -> None:
    """Run in the peer interpreter: time the peers on the data in ``path``, print JSON."""
    X = np.load(path)
    out = {}
    for name in peers:
        try:
            fn = _peer_fn(name)
        except ImportError as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}
            continue
        t, v = _time(fn, X, repeat)
        out[name] = {"time": t, "id": v}
    versions = {}
    for mod in ("numpy", "dadapy", "skdim"):
        try:
            m = __import__(mod)
            versions[mod] = getattr(m, "__version__", "?")
        except ImportError:
            pass
    print(json.dumps({"results": out, "versions": versions}))


def _run_peers_subprocess(python: str, X: np.ndarray, peers: list[str], repeat: int, threads):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "X.npy")
        np.save(path, X)
        env = dict(os.environ)
        if threads:
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(threads)
        cmd = [python, os.path.abspath(__file__), "--_worker", path, "--repeat", str(repeat),
               "--peers", *peers]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            msg = (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]
            return {p: {"error": f"peer interpreter: {msg}"} for p in peers}, {}
        payload = json.loads(proc.stdout.strip().splitlines()[-1])
        return payload["results"], payload.get("versions", {})


def _versions_here() -> dict:
    import numpy

    import netphys

    return {"netphys": netphys.__version__, "numpy": numpy.__version__}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--n-points", type=int, nargs="+", default=[1500, 5000, 10000])
    ap.add_argument("-D", "--dims", type=int, nargs="+", default=[250, 4096])
    ap.add_argument("--intrinsic-dim", type=int, default=10, help="dimension of the manifold (default 10)")
    ap.add_argument("--repeat", type=int, default=1, help="timing repeats, best is reported (default 1)")
    ap.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS)
    ap.add_argument("--peer-python", default=None,
                    help="interpreter of another environment in which to run the peers (e.g. numpy<2 for DADApy)")
    ap.add_argument("--threads", type=int, default=None, help="BLAS/OpenMP threads (default: library default)")
    ap.add_argument("--quick", action="store_true", help="small run: N=1500, D=250 and 4096, repeat 3")
    ap.add_argument("--csv", default=None, help="also write the table to this CSV file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._worker:
        _worker(args._worker, args.peers, args.repeat)
        return 0
    if args.quick:
        args.n_points, args.dims, args.repeat = [1500], [250, 4096], 3

    limiter = None
    if args.threads:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(args.threads)

    rows = []
    versions = _versions_here()
    peer_versions: dict = {}
    here_fns = {}
    if not args.peer_python:
        for p in args.peers:
            try:
                here_fns[p] = _peer_fn(p)
            except ImportError as exc:
                here_fns[p] = f"not available ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
    netphys_fn = _netphys_fn()
    for D in args.dims:
        for n in args.n_points:
            X = make_data(n, D, args.intrinsic_dim, args.seed)
            t_np, id_np = _time(netphys_fn, X, args.repeat)
            rows.append({"N": n, "D": D, "impl": "netphys", "time": t_np, "id": id_np})
            if args.peer_python:
                res, peer_versions = _run_peers_subprocess(args.peer_python, X, args.peers, args.repeat,
                                                           args.threads)
            else:
                res = {}
                for p, fn in here_fns.items():
                    if isinstance(fn, str):
                        res[p] = {"error": fn}
                    else:
                        t, v = _time(fn, X, args.repeat)
                        res[p] = {"time": t, "id": v}
            for p in args.peers:
                r = res.get(p, {"error": "not run"})
                rows.append({"N": n, "D": D, "impl": p, "time": r.get("time", np.nan), "id": r.get("id", np.nan),
                             "error": r.get("error")})
            _print_rows(rows[-(1 + len(args.peers)):], t_np, id_np, header=(len(rows) == 1 + len(args.peers)))
    if limiter is not None:
        limiter.unregister()

    threads = args.threads or os.cpu_count()
    print(f"\n# {platform.processor() or platform.machine()}, {os.cpu_count()} cores (threads: {threads}); "
          f"here: {versions}; peers: {peer_versions or 'in-process'}")
    print("# t/t_netphys > 1: netphys faster; rel. diff = ID_peer / ID_netphys - 1")
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["N", "D", "impl", "time", "id", "error"])
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k) for k in w.fieldnames})
    return 0


def _print_rows(rows, t_np, id_np, header: bool) -> None:
    if header:
        print(f"{'N':>6} {'D':>5}  {'implementation':<22} {'time [s]':>9} {'t/t_netphys':>11} {'ID':>8} "
              f"{'rel. diff':>10}")
    for r in rows:
        label = PEER_LABELS.get(r["impl"], r["impl"])
        if r.get("error"):
            print(f"{r['N']:>6} {r['D']:>5}  {label:<22} {'skipped: ' + r['error']}")
            continue
        ratio = r["time"] / t_np
        rel = "" if r["impl"] == "netphys" else f"{r['id'] / id_np - 1:+.1e}"
        print(f"{r['N']:>6} {r['D']:>5}  {label:<22} {r['time']:>9.3f} {ratio:>11.2f} {r['id']:>8.4f} {rel:>10}",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
