"""Keyed piece cache of the experiment runner.

A *piece* is one cached unit of work of an experiment (e.g. the information of one feature in one layer
of one network in one realisation). Its key is the SHA-256 of a canonical JSON document holding
everything the piece depends on:

- the piece's name,
- the config fields it reads (declared by the experiment, never the whole config, so that changing an
  unrelated field reuses it and changing a field it reads recomputes it),
- the identity of every model (class, name, weights, parameter sha256) and stimulus set
  (sources, preprocessing, file sizes and modification times) it uses,
- the piece's coordinates (network, realisation, layer, ...),
- the version of every estimator it calls (``ESTIMATOR_VERSION`` of the library module, falling back to
  the netphys version).

Pieces are stored as ``<key>.npz`` (NumPy arrays of the data variables and coordinates) plus the full key
document inside the archive, written atomically. A piece whose archive cannot be read (truncated or
empty, e.g. an interrupted copy) or whose stored key document differs from the expected one is reported
(a logged warning and an entry in ``events``) and recomputed, never reused. Orphaned ``.tmp`` files of
interrupted writes are removed when the cache is opened.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import xarray as xr

from ..io import atomic_write_bytes

log = logging.getLogger(__name__)

__all__ = ["PieceCache", "canonical_json", "key_hash", "state_dataset", "split_state", "read_piece_file"]


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, float) and not np.isfinite(v):
        return repr(v)
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if hasattr(v, "to_dict"):
        return _jsonable(v.to_dict())
    return repr(v)


def canonical_json(doc) -> str:
    """A stable JSON text of ``doc`` (sorted keys, tuples as lists, NumPy scalars as Python ones)."""
    return json.dumps(_jsonable(doc), sort_keys=True, separators=(",", ":"))


def key_hash(doc) -> str:
    """SHA-256 hex digest of :func:`canonical_json` of ``doc``."""
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def _to_npz(ds: xr.Dataset, key_doc: str) -> bytes:
    arrays, meta = {}, {"vars": {}, "coords": {}, "attrs": _jsonable(ds.attrs), "dims": {}}
    for kind, coll in (("vars", ds.data_vars), ("coords", ds.coords)):
        for i, (name, var) in enumerate(coll.items()):
            a = np.asarray(var.values)
            if a.dtype == object:
                a = a.astype(str)
            slot = f"{kind[0]}{i}"
            arrays[slot] = a
            meta[kind][str(name)] = {"slot": slot, "dims": list(var.dims), "attrs": _jsonable(var.attrs)}
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array(json.dumps(meta)), __key__=np.array(key_doc), **arrays)
    return buf.getvalue()


def _from_npz(data) -> tuple[xr.Dataset, str]:
    meta = json.loads(str(data["__meta__"]))
    coords = {name: (m["dims"], data[m["slot"]], m["attrs"]) for name, m in meta["coords"].items()}
    dvars = {name: (m["dims"], data[m["slot"]], m["attrs"]) for name, m in meta["vars"].items()}
    return xr.Dataset(dvars, coords=coords, attrs=meta["attrs"]), str(data["__key__"])


def read_piece_file(path) -> xr.Dataset:
    """The Dataset of a stored piece file (for jobs in other processes that read a piece by path)."""
    with np.load(path, allow_pickle=False) as data:
        return _from_npz(data)[0]


#: prefix of the variables that hold the tensors of a state dict inside a piece
STATE_PREFIX = "state:"


def state_dataset(state, ds: xr.Dataset | None = None) -> xr.Dataset:
    """``ds`` (or an empty Dataset) with one variable per tensor of a torch ``state`` dict.

    Each tensor becomes the variable ``"state:<name>"`` with its own dimensions, its dtype kept (dtypes
    NumPy lacks, e.g. bfloat16, are stored as float32 and restored by :func:`split_state`), so trained
    weights are a piece like any other: keyed, written atomically, damaged files detected.
    """
    import torch

    out = xr.Dataset() if ds is None else ds.copy()
    names, dtypes = [], {}
    for name, t in state.items():
        t = t.detach().cpu()
        try:
            a = t.numpy()
        except TypeError:  # a dtype NumPy cannot hold
            a = t.to(torch.float32).numpy()
            dtypes[name] = str(t.dtype).replace("torch.", "")
        var = f"{STATE_PREFIX}{name}"
        out[var] = (tuple(f"{var}:d{i}" for i in range(a.ndim)), a.copy())
        names.append(name)
    out.attrs = {**out.attrs, "state_names": names, "state_dtypes": dtypes}
    return out


def split_state(ds: xr.Dataset):
    """``(state_dict, rest)``: the tensors stored by :func:`state_dataset` and the other variables."""
    import torch

    names = list(ds.attrs.get("state_names", []))
    dtypes = dict(ds.attrs.get("state_dtypes", {}) or {})
    state = {}
    for name in names:
        t = torch.from_numpy(np.array(ds[f"{STATE_PREFIX}{name}"].values, copy=True))
        if name in dtypes:
            t = t.to(getattr(torch, dtypes[name]))
        state[name] = t
    rest = ds.drop_vars([v for v in ds.data_vars if str(v).startswith(STATE_PREFIX)])
    rest = rest.drop_dims([d for d in rest.dims if str(d).startswith(STATE_PREFIX)])
    rest.attrs = {k: v for k, v in ds.attrs.items() if k not in ("state_names", "state_dtypes")}
    return state, rest


def _warn(msg: str) -> None:
    import warnings

    from .._validation import NetphysWarning

    log.info(msg)
    warnings.warn(msg, NetphysWarning, stacklevel=3)


class PieceCache:
    """Content-addressed store of experiment pieces under ``root`` (``None``: memory only).

    Attributes
    ----------
    computed, reused : collections.Counter
        Number of pieces computed / reused, per piece name (tests count recomputations with these).
    events : list of str
        Damaged pieces found and removed orphan files (stored in the provenance of the result).
    """

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else None
        self.computed: Counter = Counter()
        self.reused: Counter = Counter()
        self.events: list[str] = []
        self._memory: dict = {}
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            for tmp in self.root.rglob(".*.tmp"):
                try:
                    tmp.unlink()
                    self.events.append(f"removed orphaned temporary file {tmp.name}")
                except OSError:  # pragma: no cover - another process owns it
                    pass

    def path(self, key: str) -> Path | None:
        return None if self.root is None else self.root / key[:2] / f"{key}.npz"

    def get(self, name: str, key: str, doc: str):
        """The stored piece for ``key``, or ``None`` (missing, unreadable or stale)."""
        if key in self._memory:
            self.reused[name] += 1
            return self._memory[key]
        p = self.path(key)
        if p is None or not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as data:
                ds, stored = _from_npz(data)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            msg = f"damaged cache piece {name} ({p.name}: {type(exc).__name__}: {exc}); recomputed"
            _warn(msg)
            self.events.append(msg)
            p.unlink(missing_ok=True)
            return None
        if stored != doc:
            msg = f"cache piece {name} ({p.name}) was written for another key; recomputed"
            _warn(msg)
            self.events.append(msg)
            return None
        self._memory[key] = ds
        self.reused[name] += 1
        return ds

    def put(self, name: str, key: str, doc: str, ds: xr.Dataset) -> xr.Dataset:
        """Store a freshly computed piece (atomically on disk when the cache has a root)."""
        self.computed[name] += 1
        p = self.path(key)
        if p is not None:
            atomic_write_bytes(p, _to_npz(ds, doc))
        self._memory[key] = ds
        return ds

    def stats(self) -> dict:
        names = sorted(set(self.computed) | set(self.reused))
        return {n: {"computed": self.computed[n], "reused": self.reused[n]} for n in names}
