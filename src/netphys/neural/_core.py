"""`NeuralDataset`: recorded responses of one or more areas to one shared set of stimuli."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import param_error

log = logging.getLogger(__name__)

RESPONSE_DIMS = ("stimulus", "unit")
#: The old name of the ``unit`` dim (renamed to match recordings); still read, with a DeprecationWarning.
_LEGACY_UNIT_DIM = "neuron"


def _legacy_dim(da, where: str):
    """``da`` with a legacy ``neuron`` dim renamed to ``unit`` (DeprecationWarning)."""
    if isinstance(da, xr.DataArray) and _LEGACY_UNIT_DIM in da.dims and "unit" not in da.dims:
        warnings.warn(f"{where}: the 'neuron' dim is deprecated; neural responses use the 'unit' dim, as "
                      "recordings do (da.rename(neuron='unit'))", DeprecationWarning, stacklevel=4)
        return da.rename({_LEGACY_UNIT_DIM: "unit"})
    return da
REPEAT_DIM = "repeat"
SHARED_DATA_ENV = "NETPHYS_SHARED_DATA"


class NeuralDataset:
    """Responses of recorded neurons, grouped by area, to one set of stimuli.

    Every area holds an :class:`xarray.DataArray` with dims ``(stimulus, unit)`` (responses averaged
    over repeats) or ``(stimulus, unit, repeat)`` (single trials; NaN pads stimuli shown fewer
    times). All areas share the ``stimulus`` axis, whose per-stimulus coordinates (labels, grating
    conditions, ...) live in :attr:`stimuli`; the images, when known, in :attr:`images`.

    Parameters
    ----------
    responses : mapping of str to xarray.DataArray
        Area name -> responses, dims ``(stimulus, unit[, repeat])``; see :func:`from_arrays` to build
        them from plain arrays.
    images : ndarray or callable, optional
        ``(n_stimuli, H, W, 3)`` uint8 RGB or ``(n_stimuli, H, W)`` grayscale images, or a callable
        returning them (decoded on first access of :attr:`images`, then cached).
    stimuli : pandas.DataFrame, optional
        One row per stimulus (e.g. ``label``, ``orientation``, ``contrast``); also attached as
        coordinates along ``stimulus`` of every area.
    attrs : dict, optional
        Provenance: ``source``, ``citation``, ``licence``, ``session``, ...

    Raises
    ------
    NetphysError
        On missing dims, mismatched numbers of stimuli, non-finite repeat-averaged responses or
        stimuli without any finite repeat.

    Notes
    -----
    Missing trials. Recordings where some stimuli were shown fewer times are stored NaN-padded along
    ``repeat``; :meth:`responses` averages with ``nanmean`` (the mean over the repeats that exist).
    Repeat-averaged (2-D) responses must be finite.

    See Also
    --------
    netphys.stimuli.StimulusSet.from_arrays : to present :attr:`images` to a network.
    """

    def __init__(self, responses: Mapping[str, xr.DataArray], *, images=None,
                 stimuli: pd.DataFrame | None = None, attrs: dict | None = None):
        func = "NeuralDataset"
        if not isinstance(responses, Mapping) or len(responses) == 0:
            raise param_error("responses", func, "a non-empty mapping of area name -> DataArray", responses)
        n_stim = None
        areas: dict[str, xr.DataArray] = {}
        for area, da in responses.items():
            if not isinstance(area, str) or not area:
                raise param_error("responses", func, "keyed by non-empty area names (str)", area)
            if not isinstance(da, xr.DataArray):
                raise param_error(f"responses[{area!r}]", func, "an xarray.DataArray", type(da).__name__,
                                  "build datasets from plain arrays with netphys.neural.from_arrays")
            da = _legacy_dim(da, func)
            if da.dims not in (RESPONSE_DIMS, RESPONSE_DIMS + (REPEAT_DIM,)):
                raise param_error(f"responses[{area!r}]", func,
                                  "a DataArray with dims ('stimulus', 'unit') or ('stimulus', 'unit', "
                                  "'repeat')", da.dims)
            _check_response_values(da.values, f"responses[{area!r}]", func)
            if n_stim is None:
                n_stim = da.sizes["stimulus"]
            elif da.sizes["stimulus"] != n_stim:
                raise param_error(f"responses[{area!r}]", func,
                                  f"{n_stim} stimuli like the other areas (all areas share the stimuli)",
                                  f"{da.sizes['stimulus']} stimuli")
            areas[area] = da
        if stimuli is None:
            stimuli = pd.DataFrame(index=pd.RangeIndex(n_stim, name="stimulus"))
        if not isinstance(stimuli, pd.DataFrame) or len(stimuli) != n_stim:
            raise param_error("stimuli", func, f"a DataFrame with one row per stimulus ({n_stim})",
                              f"{type(stimuli).__name__} of length {len(stimuli)}")
        self.stimuli = stimuli.reset_index(drop=True)
        self.stimuli.index.name = "stimulus"
        self._areas = {a: self._with_stimulus_coords(da) for a, da in areas.items()}
        self.attrs = dict(attrs or {})
        if images is not None and not callable(images):
            images = _check_images(images, n_stim, func)
        self._images = images

    # ------------------------------------------------------------------ access
    def _with_stimulus_coords(self, da: xr.DataArray) -> xr.DataArray:
        da = da.assign_coords(stimulus=np.arange(da.sizes["stimulus"]))
        for col in self.stimuli.columns:
            da = da.assign_coords({str(col): ("stimulus", self.stimuli[col].to_numpy())})
        return da

    @property
    def areas(self) -> list[str]:
        """Area names, in insertion order."""
        return list(self._areas)

    @property
    def n_stimuli(self) -> int:
        return len(self.stimuli)

    @property
    def n_units(self) -> dict[str, int]:
        """Number of recorded units (neurons) per area."""
        return {a: int(da.sizes["unit"]) for a, da in self._areas.items()}

    @property
    def n_neurons(self) -> dict[str, int]:
        """Deprecated alias of :attr:`n_units`."""
        warnings.warn("NeuralDataset.n_neurons is deprecated; use n_units", DeprecationWarning, stacklevel=2)
        return self.n_units

    def has_repeats(self, area: str) -> bool:
        """Whether ``area`` holds single-trial responses (a ``repeat`` dim)."""
        return REPEAT_DIM in self._get(area, "has_repeats").dims

    def _get(self, area, method: str) -> xr.DataArray:
        if area not in self._areas:
            raise param_error("area", f"NeuralDataset.{method}", "one of " + ", ".join(map(repr, self._areas)),
                              area)
        return self._areas[area]

    def responses(self, area: str, average_repeats: bool = True) -> xr.DataArray:
        """Responses of the neurons of ``area``.

        Parameters
        ----------
        area : str
        average_repeats : bool, default True
            Average single trials over ``repeat`` with ``nanmean`` (NaN-padded missing trials are ignored).
            Without a ``repeat`` dim the responses are returned as stored.

        Returns
        -------
        xarray.DataArray
            Dims ``(stimulus, unit)``, or ``(stimulus, unit, repeat)`` when ``average_repeats`` is
            False and the area has single trials.
        """
        da = self._get(area, "responses")
        if average_repeats and REPEAT_DIM in da.dims:
            mean = da.mean(REPEAT_DIM, skipna=True, keep_attrs=True)
            mean.attrs["averaged_over"] = "repeat (nanmean; NaN-padded missing trials ignored)"
            return mean
        return da

    @property
    def images(self) -> np.ndarray | None:
        """Stimulus images, ``(n_stimuli, H, W, 3)`` uint8 or ``(n_stimuli, H, W)`` grayscale, or None."""
        if callable(self._images):
            self._images = _check_images(self._images(), self.n_stimuli, "NeuralDataset.images")
        return self._images

    @property
    def labels(self) -> np.ndarray | None:
        """The ``label`` column of :attr:`stimuli`, if any."""
        return self.stimuli["label"].to_numpy() if "label" in self.stimuli else None

    def to_dataframe(self, average_repeats: bool = True) -> pd.DataFrame:
        """A tidy table: one row per (area, stimulus, unit[, repeat]) with the stimulus coordinates.

        Columns ``area``, ``stimulus``, ``unit``, [``repeat``], ``response``, then unit coordinates and
        stimulus coordinates. Missing (NaN-padded) trials are left out.
        """
        frames = []
        for area in self._areas:
            da = self.responses(area, average_repeats=average_repeats)
            df = da.to_dataframe(name="response").reset_index()
            df = df[np.isfinite(df["response"].to_numpy())]
            df.insert(0, "area", area)
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    def __repr__(self) -> str:
        parts = [f"{a}: {dict(da.sizes)}" for a, da in self._areas.items()]
        src = self.attrs.get("source", "")
        imgs = "images" if self._images is not None else "no images"
        return f"NeuralDataset({'; '.join(parts)}; {imgs}{'; ' + src if src else ''})"


# ------------------------------------------------------------------------------ validation
def _check_response_values(values: np.ndarray, param: str, func: str) -> None:
    if values.dtype.kind not in "biuf":
        raise param_error(param, func, "numeric responses", f"dtype {values.dtype}")
    if values.dtype.kind != "f":
        return
    finite = np.isfinite(values)
    if values.ndim == 2:
        if not finite.all():
            raise param_error(param, func, "finite (no NaN or inf)",
                              f"{int((~finite).sum())} non-finite value(s) in responses of shape {values.shape}",
                              "NaN is only allowed as padding of missing trials along a 'repeat' axis")
        return
    if np.isinf(values).any():
        raise param_error(param, func, "free of inf", f"{int(np.isinf(values).sum())} inf value(s)")
    empty = ~finite.any(axis=2)
    if empty.any():
        s, n = np.argwhere(empty)[0]
        raise param_error(param, func, "at least one finite repeat for every (stimulus, unit)",
                          f"{int(empty.sum())} pair(s) with only NaN, e.g. stimulus {s}, unit {n}")


def _check_images(images, n_stim: int, func: str) -> np.ndarray:
    a = np.asarray(images)
    ok_shape = a.ndim == 3 or (a.ndim == 4 and a.shape[-1] in (1, 3))
    if not ok_shape:
        raise param_error("images", func, "an array of shape (n_stimuli, H, W, 3) or (n_stimuli, H, W)",
                          f"shape {a.shape}")
    if a.shape[0] != n_stim:
        raise param_error("images", func, f"one image per stimulus ({n_stim})", f"{a.shape[0]} images")
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype.kind not in "biuf":
        raise param_error("images", func, "a numeric array", f"dtype {a.dtype}")
    return a


# --------------------------------------------------------------------------- constructors
def _as_response_array(x, area: str, func: str, transpose: bool) -> xr.DataArray:
    x = _legacy_dim(x, func)
    if isinstance(x, xr.DataArray) and set(x.dims) <= {"stimulus", "unit", "repeat"} and \
            {"stimulus", "unit"} <= set(x.dims):
        da = x.transpose(*[d for d in ("stimulus", "unit", "repeat") if d in x.dims])
    else:
        a = np.asarray(x)
        if a.ndim not in (2, 3):
            raise param_error(f"responses[{area!r}]", func,
                              "an array of shape (n_stimuli, n_units) or (n_stimuli, n_units, n_repeats)",
                              f"shape {a.shape}")
        if transpose:
            a = np.swapaxes(a, 0, 1)
        dims = RESPONSE_DIMS + ((REPEAT_DIM,) if a.ndim == 3 else ())
        da = xr.DataArray(a, dims=dims)
    if da.dtype.kind in "biu":
        da = da.astype(np.float64)
    coords = {"unit": np.arange(da.sizes["unit"])}
    if REPEAT_DIM in da.dims:
        coords[REPEAT_DIM] = np.arange(da.sizes[REPEAT_DIM])
    da = da.assign_coords(coords).rename("response")
    da.attrs.setdefault("area", area)
    return da


def from_arrays(responses: Mapping[str, object], images=None, labels: Sequence | None = None, *,
                stimuli: pd.DataFrame | None = None, transpose: bool = False,
                attrs: dict | None = None) -> NeuralDataset:
    """Build a :class:`NeuralDataset` from plain arrays, e.g. the rat V1/LM/LI/LL data of Fig. 2.

    Parameters
    ----------
    responses : mapping of str to array-like
        Area -> ``(n_stimuli, n_neurons)`` repeat-averaged responses or ``(n_stimuli, n_neurons,
        n_repeats)`` single trials (NaN for missing trials). Areas may have different numbers of neurons
        but must share the stimuli (same rows, same order). DataArrays with dims ``stimulus``/``unit`` (the old ``neuron`` is renamed, with a DeprecationWarning)
        [/``repeat``] are taken as they are.
    images : array-like, optional
        ``(n_stimuli, H, W, 3)`` or ``(n_stimuli, H, W)`` images, row ``i`` <-> stimulus ``i``.
    labels : sequence, optional
        One label per stimulus (e.g. object identity); stored as the ``label`` column of ``stimuli``.
    stimuli : pandas.DataFrame, optional
        Other per-stimulus coordinates (one row per stimulus).
    transpose : bool, default False
        The arrays are ``(n_neurons, n_stimuli[, n_repeats])`` (neurons first, as in many recordings).
    attrs : dict, optional
        Provenance, e.g. ``{"source": "Tafazoli et al. 2017", "licence": "..."}``.

    Returns
    -------
    NeuralDataset

    Raises
    ------
    NetphysError
        On arrays that are not 2-D/3-D, mismatched numbers of stimuli (across areas, images, labels),
        non-finite repeat-averaged responses, or stimuli with only NaN repeats.

    Examples
    --------
    >>> import numpy as np
    >>> ds = from_arrays({"V1": np.random.rand(380, 228), "LL": np.random.rand(380, 152)})
    >>> ds.areas, ds.responses("LL").shape
    (['V1', 'LL'], (380, 152))
    """
    func = "from_arrays"
    if not isinstance(responses, Mapping) or len(responses) == 0:
        raise param_error("responses", func, "a non-empty mapping of area name -> array", responses)
    das = {str(a): _as_response_array(x, str(a), func, transpose) for a, x in responses.items()}
    sizes = {a: da.sizes["stimulus"] for a, da in das.items()}
    if len(set(sizes.values())) > 1:
        raise param_error("responses", func, "arrays with the same number of stimuli (rows) in every area",
                          sizes, "pass transpose=True if the arrays are neurons x stimuli")
    n_stim = next(iter(sizes.values()))
    table = pd.DataFrame(index=range(n_stim)) if stimuli is None else stimuli.reset_index(drop=True).copy()
    if len(table) != n_stim:
        raise param_error("stimuli", func, f"one row per stimulus ({n_stim})", f"{len(table)} rows")
    if labels is not None:
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.shape[0] != n_stim:
            raise param_error("labels", func, f"one label per stimulus ({n_stim})", f"shape {lab.shape}")
        table["label"] = lab
    return NeuralDataset(das, images=images, stimuli=table, attrs=attrs)


def _read_table(path: Path, param: str, func: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"the '{param}' parameter of {func} must name an existing .npy or .csv file, "
                                f"got '{path}' (not found)")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix in (".csv", ".tsv", ".txt"):
        delim = "\t" if suffix == ".tsv" else ","
        with open(path) as fh:
            first = fh.readline()
        try:
            [float(v) for v in first.strip().split(delim) if v.strip()]
            skip = 0
        except ValueError:
            skip = 1  # a header row
        try:
            return np.loadtxt(path, delimiter=delim, skiprows=skip, ndmin=2)
        except ValueError as exc:
            raise param_error(param, func, "a numeric table (optionally with one header row)",
                              str(path), str(exc)) from None
    raise param_error(param, func, "a .npy, .csv, .tsv or .txt file", str(path))


def _read_labels(path: Path, func: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"the 'labels' parameter of {func} must name an existing file, got '{path}' "
                                "(not found)")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False).ravel()
    with open(path) as fh:
        rows = [r.strip() for r in fh.read().splitlines() if r.strip()]
    return np.asarray(rows)


def _read_images(path: Path, func: str) -> np.ndarray:
    from PIL import Image

    if path.is_file() and path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp",
                                                                         ".tif", ".tiff"))
        if not files:
            raise FileNotFoundError(f"the 'images' parameter of {func} must name a .npy file or a folder of "
                                    f"image files (sorted by name = stimulus order), got '{path}' (no images)")
        arrays = []
        for f in files:
            with Image.open(f) as im:
                arrays.append(np.asarray(im.convert("RGB")))
        return np.stack(arrays)
    raise FileNotFoundError(f"the 'images' parameter of {func} must name a .npy file or a folder of image "
                            f"files, got '{path}' (not found)")


def from_files(responses: Mapping[str, str | os.PathLike], images=None, labels=None, *,
               transpose: bool = False, attrs: dict | None = None) -> NeuralDataset:
    """Build a :class:`NeuralDataset` from ``.npy``/``.csv`` files of a user's own recordings.

    Parameters
    ----------
    responses : mapping of str to path
        Area -> file holding a ``(n_stimuli, n_neurons)`` table (``.npy``, or ``.csv``/``.tsv``/``.txt``
        with an optional header row) or a ``(n_stimuli, n_neurons, n_repeats)`` ``.npy`` array.
    images : path, optional
        A ``.npy`` array ``(n_stimuli, H, W[, 3])`` or a folder of image files whose sorted names give
        the stimulus order.
    labels : path or sequence, optional
        ``.npy`` array or a text file with one label per line (or the labels themselves).
    transpose : bool, default False
        The tables are neurons x stimuli.
    attrs : dict, optional
        Provenance; ``source_files`` is added.

    Returns
    -------
    NeuralDataset

    Raises
    ------
    FileNotFoundError
        Naming the missing path and what was expected there.
    NetphysError
        On malformed tables or shapes (see :func:`from_arrays`).
    """
    func = "from_files"
    if not isinstance(responses, Mapping) or len(responses) == 0:
        raise param_error("responses", func, "a non-empty mapping of area name -> file path", responses)
    arrays = {a: _read_table(Path(p), f"responses[{a!r}]", func) for a, p in responses.items()}
    imgs = _read_images(Path(images), func) if images is not None else None
    if labels is not None and isinstance(labels, (str, os.PathLike)):
        labels = _read_labels(Path(labels), func)
    attrs = dict(attrs or {})
    attrs.setdefault("source_files", {a: str(Path(p)) for a, p in responses.items()})
    return from_arrays(arrays, images=imgs, labels=labels, transpose=transpose, attrs=attrs)


# ------------------------------------------------------------------------------ shared data
def default_shared_root() -> Path | None:
    """Folder of the optional shared real data sets, or None when absent.

    ``$NETPHYS_SHARED_DATA`` when set (None if it names no folder); otherwise the first ``shared/data``
    folder found in the current directory or one of its parents (so ``../shared/data`` from a checkout
    next to ``shared/``).
    """
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            return p.resolve()
        log.warning("%s=%s is not a folder; no shared data", SHARED_DATA_ENV, env)
        return None
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        cand = d / "shared" / "data"
        if cand.is_dir():
            return cand
    return None


def resolve_root(root, folder: str, func: str) -> Path:
    """The data set folder ``folder`` from ``root`` (the folder itself or the shared data root)."""
    if root is None:
        base = default_shared_root()
        if base is None:
            raise FileNotFoundError(
                f"the 'root' parameter of {func} must name the '{folder}' folder (or the shared data folder "
                f"that contains it), got None and no shared data was found; pass root= or set "
                f"{SHARED_DATA_ENV}")
        root = base
    root = Path(root).expanduser()
    if (root / folder).is_dir():
        return root / folder
    if root.is_dir():
        return root
    raise FileNotFoundError(f"the 'root' parameter of {func} must name the '{folder}' folder (or the shared "
                            f"data folder that contains it), got '{root}' (not found)")


__all__ = ["NeuralDataset", "from_arrays", "from_files", "default_shared_root"]
