"""Loaders for the real recordings in the shared data folder (optional; never shipped modified).

* :func:`load_cowley_v4` -- macaque V4, Utah arrays, responses to natural images (Cowley et al. 2023).
* :func:`load_ecker_v1` -- macaque V1 single units, static or drifting gratings (Ecker et al. 2010,
  Berens et al. 2012). CC BY-NC-ND 3.0: the ``.mat`` file is only read; conversion happens in memory.
* :func:`load_allen_v1` -- mouse V1 (VISp), two-photon, 118 natural scenes (Allen Brain Observatory).

Every loader takes ``root``: the data set's own folder, or the shared data folder that contains it,
or None for :func:`~netphys.neural.default_shared_root`.
"""
from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from .._validation import check_choice, param_error
from ._core import NeuralDataset, resolve_root

log = logging.getLogger(__name__)

__all__ = ["load_cowley_v4", "load_ecker_v1", "load_allen_v1", "COWLEY_SESSIONS"]

# ------------------------------------------------------------------------------------ Cowley V4
COWLEY_CITATION = ("B. R. Cowley, P. L. Stan, J. W. Pillow, M. A. Smith, 'Compact deep neural network models "
                   "of visual cortex', bioRxiv (2023)")
COWLEY_LICENCE = "GPL-3.0 (code repository; no separate data licence)"
# From the data set's readme.txt (Ext. Data Table 1): animal, split, nominal repeats per image.
COWLEY_SESSIONS = {
    "190923": ("WE", "test", 14), "190924": ("WE", "train", 13), "190925": ("WE", "train", 14),
    "190926": ("WE", "train", 15), "190927": ("WE", "train", 11), "190928": ("WE", "train", 13),
    "190929": ("WE", "train", 15), "201016": ("PE", "train", 6), "201017": ("PE", "train", 7),
    "201018": ("PE", "train", 5), "201019": ("PE", "train", 4), "201020": ("PE", "train", 4),
    "201021": ("PE", "train", 7), "201022": ("PE", "train", 5), "201023": ("PE", "train", 7),
    "201024": ("PE", "train", 7), "201025": ("PE", "test", 12), "210224": ("PE", "validation", 9),
    "210225": ("PE", "test", 6), "210226": ("PE", "train", 6), "210301": ("PE", "train", 4),
    "210302": ("PE", "train", 5), "210303": ("PE", "train", 3), "210304": ("PE", "train", 5),
    "210305": ("PE", "train", 22), "210308": ("PE", "train", 4), "210309": ("PE", "train", 4),
    "210310": ("PE", "train", 3), "210312": ("PE", "train", 4), "210315": ("PE", "train", 2),
    "210316": ("PE", "train", 3), "210322": ("PE", "train", 4), "210323": ("PE", "train", 4),
    "210324": ("PE", "train", 4), "210325": ("PE", "test", 8), "210326": ("PE", "train", 4),
    "210620": ("RA", "train", 9), "210621": ("RA", "train", 16), "211008": ("RA", "train", 24),
    "211012": ("RA", "train", 15), "211013": ("RA", "train", 15), "211014": ("RA", "train", 11),
    "211015": ("RA", "train", 18), "211018": ("RA", "train", 10), "211022": ("RA", "test", 20),
    "211025": ("RA", "train", 16), "211026": ("RA", "train", 13), "211027": ("RA", "train", 18),
    "211028": ("RA", "train", 14), "211103": ("RA", "train", 13),
}
_IMAGE_NAME = re.compile(r"(?:^|/)image(\d+)\.jpe?g$", re.IGNORECASE)


def _zip_images(path: Path, n_images: int, func: str):
    """A callable decoding ``image0001.jpg``... of a zip (any sub-folder) into an (n, H, W, 3) uint8 array."""
    if not path.is_file():
        raise FileNotFoundError(f"{func} expected the images of this session in '{path}' (a zip of "
                                f"image0001.jpg ... image{n_images:04d}.jpg), which was not found; pass "
                                f"images=False to load responses only")
    with zipfile.ZipFile(path) as zf:
        members = {}
        for name in zf.namelist():
            m = _IMAGE_NAME.search(name)
            if m:
                members[int(m.group(1))] = name
    expected = set(range(1, n_images + 1))
    if set(members) != expected:
        missing = sorted(expected - set(members))[:5]
        extra = sorted(set(members) - expected)[:5]
        raise param_error("root", func, f"a folder whose '{path.name}' holds image0001.jpg ... "
                          f"image{n_images:04d}.jpg (one per response column)",
                          f"{len(members)} images (missing e.g. {missing}, unexpected e.g. {extra})")

    def load() -> np.ndarray:
        from PIL import Image

        out = None
        with zipfile.ZipFile(path) as zf:
            for k in range(1, n_images + 1):
                with zf.open(members[k]) as fh, Image.open(fh) as im:
                    a = np.asarray(im.convert("RGB"))
                if out is None:
                    out = np.empty((n_images,) + a.shape, dtype=np.uint8)
                out[k - 1] = a
        log.debug("decoded %d images from %s", n_images, path)
        return out

    return load


def _available_sessions(folder: Path) -> list[str]:
    return sorted(m.group(1) for p in folder.glob("responses_*.npy")
                  if (m := re.fullmatch(r"responses_(.+)\.npy", p.name)))


def load_cowley_v4(root=None, sessions: Iterable | None = None, *, images: bool = True,
                   repeats: bool = False) -> dict[str, NeuralDataset]:
    """Macaque V4 responses to natural images (Cowley, Stan, Pillow & Smith 2023).

    Parameters
    ----------
    root : path, optional
        The ``cowley-v4`` folder, or the shared data folder containing it; default
        :func:`~netphys.neural.default_shared_root`.
    sessions : iterable of str or int, optional
        Session ids (e.g. ``"190923"``); default all sessions found in ``responses_repeat_averaged/``.
    images : bool, default True
        Attach the session's 112 x 112 RGB images from ``images/images_<session>.zip`` (decoded lazily
        on first access of ``NeuralDataset.images``). Image ``image{i+1:04d}.jpg`` is stimulus ``i``
        (response column ``i``), wherever it sits in the zip (session 190923 keeps its images in a
        sub-folder; some zips are not in name order).
    repeats : bool, default False
        Load single trials from ``responses_raw/responses_<session>.npy`` (neurons x images x repeats,
        NaN-padded where an image was shown fewer times) instead of the repeat averages. Only some
        sessions have them (here 210325); asking for others raises.

    Returns
    -------
    dict of str to NeuralDataset
        Session id -> dataset with one area, ``'V4'``: dims ``(stimulus, unit)`` (or ``(stimulus, neuron,
        repeat)``), spike counts in 100 ms bins (averaged over repeats). ``attrs`` hold the session,
        animal, split, citation and licence. Neuron coordinate ``unit_id`` is ``'<session>/<index>'``.

    Raises
    ------
    FileNotFoundError
        Naming the missing folder or file.
    NetphysError
        On unknown sessions, malformed zips, or shapes that do not match.

    Notes
    -----
    Spike counts are in 100 ms bins (readme). ``NeuralDataset.responses(average_repeats=True)`` of
    single trials is the ``nanmean`` over the repeats that exist, and equals the repeat-averaged file.
    No category labels exist for these images.
    """
    func = "load_cowley_v4"
    folder = resolve_root(root, "cowley-v4", func)
    avg_dir = folder / "responses_repeat_averaged"
    if not avg_dir.is_dir():
        raise FileNotFoundError(f"{func} expected the folder '{avg_dir}' with responses_<session>.npy files "
                                f"(neurons x images, repeat-averaged spike counts), which was not found")
    available = _available_sessions(avg_dir)
    if sessions is None:
        chosen = available
    else:
        if isinstance(sessions, (str, int)):
            sessions = [sessions]
        chosen = [str(s) for s in sessions]
        unknown = [s for s in chosen if s not in available]
        if unknown:
            raise param_error("sessions", func, "session ids among " + ", ".join(available), unknown)
    raw_dir = folder / "responses_raw"
    if repeats:
        have_raw = _available_sessions(raw_dir) if raw_dir.is_dir() else []
        lacking = [s for s in chosen if s not in have_raw]
        if lacking:
            raise FileNotFoundError(
                f"{func}(repeats=True) expected single trials in '{raw_dir}/responses_<session>.npy' for "
                f"session(s) {lacking}; only {have_raw or 'none'} have them: pass sessions={have_raw} or "
                f"repeats=False")

    out: dict[str, NeuralDataset] = {}
    for s in chosen:
        avg = np.load(avg_dir / f"responses_{s}.npy", allow_pickle=False)
        if avg.ndim != 2:
            raise param_error("root", func, "responses_<session>.npy files of shape (neurons, images)",
                              f"shape {avg.shape} in {avg_dir / f'responses_{s}.npy'}")
        n_neurons, n_images = avg.shape
        if repeats:
            raw_path = raw_dir / f"responses_{s}.npy"
            raw = np.load(raw_path, allow_pickle=False)
            if raw.ndim != 3 or raw.shape[:2] != avg.shape:
                raise param_error("root", func, f"single trials of shape ({n_neurons}, {n_images}, repeats) "
                                  "matching the repeat averages", f"shape {raw.shape} in {raw_path}")
            data = np.transpose(raw, (1, 0, 2))
            dims = ("stimulus", "unit", "repeat")
        else:
            data = avg.T
            dims = ("stimulus", "unit")
        animal, split, nominal = COWLEY_SESSIONS.get(s, ("unknown", "unknown", None))
        coords = {"unit": np.arange(n_neurons),
                  "unit_id": ("unit", np.array([f"{s}/{i:03d}" for i in range(n_neurons)]))}
        if repeats:
            coords["repeat"] = np.arange(data.shape[2])
        da = xr.DataArray(np.asarray(data, dtype=np.float64), dims=dims, coords=coords, name="response",
                          attrs={"area": "V4", "units": "spike count per 100 ms bin"
                                 + ("" if repeats else ", averaged over repeats")})
        stimuli = pd.DataFrame({"image_name": [f"image{i + 1:04d}.jpg" for i in range(n_images)]})
        loader = _zip_images(folder / "images" / f"images_{s}.zip", n_images, func) if images else None
        out[s] = NeuralDataset({"V4": da}, images=loader, stimuli=stimuli, attrs={
            "source": "Cowley et al. 2023, macaque V4 (Utah arrays)", "citation": COWLEY_CITATION,
            "licence": COWLEY_LICENCE, "session": s, "animal": animal, "split": split,
            "nominal_repeats": nominal, "path": str(folder)})
    return out


# ------------------------------------------------------------------------------------- Ecker V1
ECKER_CITATION = ("A. S. Ecker, P. Berens, G. A. Keliris, M. Bethge, N. K. Logothetis, A. S. Tolias, "
                  "'Decorrelated neuronal firing in cortical microcircuits', Science 327, 584-587 (2010); "
                  "P. Berens, A. S. Ecker, R. J. Cotton, W. J. Ma, M. Bethge, A. S. Tolias, 'A fast and simple "
                  "population code for orientation in primate V1', J. Neurosci. 32, 10618-10626 (2012)")
ECKER_LICENCE = ("CC BY-NC-ND 3.0 (http://creativecommons.org/licenses/by-nc-nd/3.0/); provided by A. S. "
                 "Tolias, A. S. Ecker, P. Berens and M. Bethge, http://bethgelab.org/datasets/v1gratings/; "
                 "converted in memory, the file is not modified")
ECKER_BIN_MS = 10
ECKER_FIRST_EDGE_MS = -200  # bin centres -195 ... 695 ms


def load_ecker_v1(root=None, kind: str = "static", *, window: tuple[float, float] = (50, 550),
                  drop_silent_trials: bool = True, max_contamination: float | None = None
                  ) -> dict[str, NeuralDataset]:
    """Macaque V1 single units (tetrodes) responding to gratings (Ecker et al. 2010; Berens et al. 2012).

    Parameters
    ----------
    root : path, optional
        The ``ecker-v1-gratings`` folder, or the shared data folder containing it.
    kind : {'static', 'moving'}, default 'static'
        ``'static'``: 8 orientations x 2 contrasts (17 sessions, 307 units; four 2002 sessions have 7
        orientations x 2 contrasts). ``'moving'``: 16 drifting directions (27 sessions, 577 units).
    window : (float, float), default (50, 550)
        Spike-count window in ms after stimulus onset, ``[start, stop)``; edges on the 10 ms bin grid
        (bins run from -200 to 700 ms). The default is the 500 ms stimulus shifted by the ~50 ms response
        latency of V1 visible in the population PSTH (rise between 40 and 50 ms, offset response near
        550-570 ms).
    drop_silent_trials : bool, default True
        Mark as missing (NaN) the trials in which *no* unit of the session fired a single spike during
        the whole 900 ms: the spike arrays are uint8 and cannot hold NaN, and such trials are padding of
        conditions shown fewer times (e.g. the first repeat of 9 of the 16 conditions of the moving
        session 2003-07-04, whose 14 units fire ~80 spikes per trial together).
    max_contamination : float, optional
        Keep only units with contamination below this value (both papers used 0.05). Default: all units.

    Returns
    -------
    dict of str to NeuralDataset
        Session date -> dataset with one area, ``'V1'``: spike counts in ``window``, dims ``(stimulus,
        neuron, repeat)``; stimuli are the grating conditions with coordinates ``orientation`` and
        ``contrast`` (static) or ``direction`` and ``contrast`` (moving), as stored in the file. Neuron
        coordinates ``tetrode`` and ``contamination``; ``attrs`` hold subject, date, window, citation and
        licence.

    Raises
    ------
    FileNotFoundError
        When ``data_v1_binned_<kind>.mat`` is missing.
    NetphysError
        On an invalid ``kind``, ``window`` or ``max_contamination``.

    Notes
    -----
    The file holds per session ``spikes`` (units x conditions x 90 bins of 10 ms x repeats, uint8),
    ``times`` (bin centres, -195 ... 695 ms), ``conditions``, ``contamination``, ``tetrode``,
    ``subject``, ``date`` (see ``data_README.m``). It is read with
    ``scipy.io.loadmat(f, squeeze_me=True, struct_as_record=False)['data']`` and never written.
    """
    import scipy.io

    func = "load_ecker_v1"
    kind = check_choice(kind, "kind", func, ("static", "moving"))
    try:
        start, stop = (float(w) for w in window)
    except (TypeError, ValueError):
        raise param_error("window", func, "a (start, stop) pair of times in ms", window) from None
    lo, hi = ECKER_FIRST_EDGE_MS, ECKER_FIRST_EDGE_MS + 90 * ECKER_BIN_MS
    on_grid = all(((t - lo) / ECKER_BIN_MS).is_integer() for t in (start, stop))
    if not (lo <= start < stop <= hi and on_grid):
        raise param_error("window", func, f"a (start, stop) pair in ms with {lo} <= start < stop <= {hi} on the "
                          f"{ECKER_BIN_MS} ms bin grid (multiples of 10)", window)
    if max_contamination is not None and not (isinstance(max_contamination, (int, float))
                                              and max_contamination > 0):
        raise param_error("max_contamination", func, "None or a positive float", max_contamination)
    folder = resolve_root(root, "ecker-v1-gratings", func)
    path = folder / f"data_v1_binned_{kind}.mat"
    if not path.is_file():
        raise FileNotFoundError(f"{func} expected '{path}' (the Ecker/Berens V1 grating data, "
                                f"data_v1_binned_{kind}.mat), which was not found")
    data = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["data"]
    data = np.atleast_1d(data)
    cond_names = ("orientation", "contrast") if kind == "static" else ("direction", "contrast")

    out: dict[str, NeuralDataset] = {}
    for sess in data:
        spikes = np.asarray(sess.spikes)
        times = np.atleast_1d(np.asarray(sess.times, dtype=float))
        conds = np.atleast_1d(sess.conditions)
        contamination = np.atleast_1d(np.asarray(sess.contamination, dtype=float))
        tetrode = np.atleast_1d(np.asarray(sess.tetrode)).astype(int)
        # squeeze_me drops singleton axes (one unit, one repeat): restore them from the known sizes
        n_units, n_cond, n_bins = contamination.size, conds.size, times.size
        if spikes.size % (n_units * n_cond * n_bins) or spikes.ndim > 4:
            raise param_error("root", func, "sessions with spikes of shape (units, conditions, bins, repeats)",
                              f"shape {spikes.shape} for {n_units} units, {n_cond} conditions, {n_bins} bins "
                              f"in {path}")
        spikes = spikes.reshape(n_units, n_cond, n_bins, -1)
        sel = (times >= start) & (times < stop)
        counts = spikes[:, :, sel, :].sum(axis=2, dtype=np.int64).astype(np.float64)  # unit x cond x rep
        n_missing = 0
        if drop_silent_trials:
            silent = spikes.sum(axis=(0, 2), dtype=np.int64) == 0  # cond x rep, whole trial, all units
            n_missing = int(silent.sum())
            counts[:, silent] = np.nan
        table = pd.DataFrame({c: [float(getattr(ci, c)) for ci in conds] for c in cond_names})
        keep = np.ones(counts.shape[0], dtype=bool)
        if max_contamination is not None:
            keep = contamination < max_contamination
        date = str(sess.date)
        da = xr.DataArray(
            np.transpose(counts[keep], (1, 0, 2)), dims=("stimulus", "unit", "repeat"),
            coords={"unit": np.arange(int(keep.sum())),
                    "unit_index": ("unit", np.flatnonzero(keep)),
                    "tetrode": ("unit", tetrode[keep]),
                    "contamination": ("unit", contamination[keep]),
                    "repeat": np.arange(counts.shape[2])},
            name="response",
            attrs={"area": "V1", "units": f"spike count in [{start:g}, {stop:g}) ms after stimulus onset"})
        out[date] = NeuralDataset({"V1": da}, stimuli=table, attrs={
            "source": f"Ecker et al. 2010 / Berens et al. 2012, macaque V1, {kind} gratings",
            "citation": ECKER_CITATION, "licence": ECKER_LICENCE, "session": date,
            "subject": str(sess.subject), "kind": kind, "window_ms": (start, stop),
            "bin_ms": ECKER_BIN_MS, "n_missing_trials": n_missing, "path": str(path)})
        if n_missing:
            log.info("%s %s: %d silent (condition, repeat) trials marked missing", func, date, n_missing)
    return out


# ------------------------------------------------------------------------------------ Allen V1
ALLEN_CITATION = ("S. E. J. de Vries et al., 'A large-scale standardized physiological survey reveals functional "
                  "organization of the mouse visual cortex', Nat. Neurosci. 23, 138-151 (2020); Allen Brain "
                  "Observatory, experiment container 511510667")
ALLEN_LICENCE = "Allen Institute terms of use (https://alleninstitute.org/terms-of-use/)"
ALLEN_RESPONSES = "derived_mean_responses_118scenes_x_212cells.npy"
ALLEN_SCENES = "all_input_scenes_118_961.npy"


def load_allen_v1(root=None) -> NeuralDataset:
    """Mouse V1 (VISp) two-photon responses to 118 natural scenes (Allen Brain Observatory).

    Parameters
    ----------
    root : path, optional
        The ``allen-visp-ns118`` folder, or the shared data folder containing it.

    Returns
    -------
    NeuralDataset
        One area, ``'V1'``: ``(118 stimulus, 212 neuron)`` mean responses over 50 repeats (derived values
        as provided), and ``images``: the 118 scenes as 31 x 31 grayscale uint8 (0-255).
        ``attrs`` hold the container (Cux2-CreERT2, VISp, 275 um, GCaMP6f), citation and licence.

    Raises
    ------
    FileNotFoundError
        When either ``.npy`` file is missing.
    NetphysError
        When the shapes do not match (118 scenes x 961 pixels; 118 scenes x cells).
    """
    func = "load_allen_v1"
    folder = resolve_root(root, "allen-visp-ns118", func)
    paths = {name: folder / name for name in (ALLEN_RESPONSES, ALLEN_SCENES)}
    what = {ALLEN_RESPONSES: "scenes x cells mean responses", ALLEN_SCENES: "scenes x 961 pixels (31 x 31)"}
    for name, p in paths.items():
        if not p.is_file():
            raise FileNotFoundError(f"{func} expected '{p}' ({what[name]}), which was not found")
    resp = np.load(paths[ALLEN_RESPONSES], allow_pickle=False)
    scenes = np.load(paths[ALLEN_SCENES], allow_pickle=False)
    if resp.ndim != 2 or scenes.ndim != 2 or scenes.shape[1] != 961 or scenes.shape[0] != resp.shape[0]:
        raise param_error("root", func, f"'{ALLEN_RESPONSES}' of shape (scenes, cells) and '{ALLEN_SCENES}' of "
                          "shape (scenes, 961) with the same number of scenes",
                          f"shapes {resp.shape} and {scenes.shape}")
    n = scenes.shape[0]
    imgs = scenes.reshape(n, 31, 31)
    if np.all(imgs == np.round(imgs)) and imgs.min() >= 0 and imgs.max() <= 255:
        imgs = imgs.astype(np.uint8)
    da = xr.DataArray(np.asarray(resp, dtype=np.float64), dims=("stimulus", "unit"),
                      coords={"unit": np.arange(resp.shape[1])}, name="response",
                      attrs={"area": "V1", "units": "mean response over 50 repeats (derived, as provided)"})
    return NeuralDataset({"V1": da}, images=imgs, stimuli=pd.DataFrame({"scene": np.arange(n)}), attrs={
        "source": "Allen Brain Observatory, mouse VISp, natural scenes", "citation": ALLEN_CITATION,
        "licence": ALLEN_LICENCE, "experiment_container_id": 511510667, "cre_line": "Cux2-CreERT2",
        "reporter_line": "Ai93(TITL-GCaMP6f)", "targeted_structure": "VISp", "imaging_depth_um": 275,
        "n_repeats": 50, "path": str(folder)})
