"""Diverse stimulus sets: PCA of a network's output, k-means, the image nearest each centre.

The *diverseSet* of the functional-segregation paper: the output of a network (the layer before the
softmax) to every image of a large pool is reduced to its first 300 principal components, the pool is
partitioned by k-means into ``k = 160`` clusters, and the image nearest each cluster centre is taken.
:func:`coverage` says how well a subset covers the pool compared with random subsets of the same size.

Both functions take a feature matrix (a recording, ``(stimulus, unit)``) and know nothing of models;
:meth:`netphys.stimuli.StimulusSet.select_diverse` records the features and returns the subset.
"""
from __future__ import annotations

import logging
import numbers
import warnings

import numpy as np
import xarray as xr

from .._random import check_random_state
from .._validation import NetphysWarning, check_finite, check_int, param_error

log = logging.getLogger(__name__)

__all__ = ["coverage", "diverse_subset"]

_REFERENCE = ("Functional segregation of inputs in artificial neural networks for vision (diverseSet: "
              "PCA, 300 components, of the pre-softmax output; k-means; nearest image to each centre; "
              "k = 160)")
#: coverage metrics and whether a lower or a higher value means a better coverage of the pool
_METRICS = {"mean_nearest_distance": "lower", "max_nearest_distance": "lower",
            "mean_pairwise_distance": "higher", "cluster_fraction": "higher"}


# ----------------------------------------------------------------------------- helpers
def _as_matrix(features, func: str) -> tuple[np.ndarray, dict]:
    """``features`` as a float64 (n_images, n_features) array, and the stimulus coordinates to keep.

    A DataArray with a ``stimulus`` dimension has it moved first; otherwise the first axis is the image.
    """
    stim_coords: dict = {}
    if isinstance(features, xr.DataArray):
        if features.ndim != 2:
            raise param_error("features", func, "a 2-D array (n_images, n_features), e.g. a recording with "
                              "dims ('stimulus', 'unit')", f"a DataArray with dims {features.dims}")
        if "stimulus" in features.dims:
            features = features.transpose("stimulus", ...)
        sdim = features.dims[0]
        stim_coords = {name: c.values for name, c in features.coords.items()
                       if c.dims == (sdim,) and name != sdim}
        features = features.values
    elif isinstance(features, (xr.Dataset, str, bytes, dict)) or features is None:
        raise param_error("features", func, "a 2-D numeric array (n_images, n_features) or a DataArray "
                          "with dims ('stimulus', 'unit')", type(features).__name__)
    try:
        a = np.asarray(features)
    except Exception:  # noqa: BLE001 - ragged lists and other objects numpy cannot turn into an array
        raise param_error("features", func, "a 2-D numeric array (n_images, n_features)",
                          type(features).__name__) from None
    if a.ndim != 2:
        raise param_error("features", func, "a 2-D array (n_images, n_features)", f"array of shape {a.shape}",
                          "pass one row of features per image (flatten or record the units first)")
    if a.dtype.kind not in "biuf":
        raise param_error("features", func, "a numeric array (ints or floats)", f"array of dtype {a.dtype}")
    a = np.asarray(a, dtype=np.float64)
    check_finite(a, "features", func, "drop the images whose responses are NaN or inf, or record another layer")
    if a.shape[0] < 2 or a.shape[1] < 1:
        raise param_error("features", func, "an array with at least 2 images (rows) and 1 feature (column)",
                          f"array of shape {a.shape}")
    return a, stim_coords


def _int_seed(random_state, func: str) -> int:
    """An int seed for scikit-learn from ``random_state`` (an int passes through; a Generator draws one)."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool) and random_state >= 0:
        return int(random_state) % (2**32)
    rng = check_random_state(random_state, func)  # refuses bad values with the templated message
    return int(rng.integers(2**31 - 1))


def _seed_note(random_state):
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return "generator" if random_state is not None else "none"


def _embed(a: np.ndarray, n_components: int, seed: int):
    """PCA of the centred features (no scaling): ``(scores, fitted PCA, components used)``."""
    from sklearn.decomposition import PCA

    used = min(n_components, a.shape[0], a.shape[1])
    if used < n_components:
        log.info("n_components=%d clipped to min(n_images, n_features) = %d", n_components, used)
    pca = PCA(n_components=used, random_state=seed)
    return pca.fit_transform(a), pca, used


def _kmeans(z: np.ndarray, k: int, seed: int, n_init: int, func: str):
    """Fitted :class:`sklearn.cluster.KMeans`; its warning about too few distinct points is re-raised as
    a :class:`NetphysWarning`."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(z)
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            warnings.warn(f"{func}: k-means found fewer distinct clusters than k={k} ({w.message}); the pool "
                          "has fewer distinct images in feature space than k, so some selected images are "
                          "identical in that space", NetphysWarning, stacklevel=3)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return km


def _sqdist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(len(x), len(y))``, vectorised (clipped at 0 against round-off)."""
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d, 0.0)


def _assign(centres: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One distinct image per centre minimising the total Euclidean distance: ``(index, distance)``.

    Only the ``k`` nearest images of each centre can be in an optimal assignment (a centre matched
    further away leaves one of its ``k`` nearest free, and moving to it lowers the total), so the
    assignment problem is solved on the union of those columns.
    """
    from scipy.optimize import linear_sum_assignment

    k, n = len(centres), len(z)
    d = np.sqrt(_sqdist(centres, z))
    if n > k:
        near = np.argpartition(d, k - 1, axis=1)[:, :k]
        cols = np.unique(near)
    else:
        cols = np.arange(n)
    rows, j = linear_sum_assignment(d[:, cols])
    index = np.empty(k, dtype=np.int64)
    index[rows] = cols[j]
    return index, d[np.arange(k), index]


def _subset_metrics(z: np.ndarray, sq: np.ndarray, sub: np.ndarray, assignment: np.ndarray,
                    k: int) -> np.ndarray:
    """The coverage metrics (order of ``_METRICS``) of the images ``sub`` of the pool ``z``."""
    s = z[sub]
    near = np.sqrt(np.maximum(sq[:, None] + sq[sub][None, :] - 2.0 * (z @ s.T), 0.0)).min(axis=1)
    pair = np.sqrt(_sqdist(s, s))[np.triu_indices(len(sub), 1)]
    return np.array([near.mean(), near.max(), pair.mean(), np.unique(assignment[sub]).size / k])


# ----------------------------------------------------------------------------- public
def diverse_subset(features, k: int = 160, *, n_components: int = 300, random_state=0,
                   n_init: int = 10) -> xr.Dataset:
    """Choose ``k`` images that span the space of a network's output: PCA, k-means, nearest images.

    Parameters
    ----------
    features : array-like (n_images, n_features) or xarray.DataArray (stimulus, unit)
        The network's output to every image of the pool (a :func:`netphys.recording.record`
        recording). Any other 2-D DataArray is read with its first dimension as the image.
    k : int, default 160
        Number of images to select (= k-means clusters), in ``[2, n_images]``.
    n_components : int, default 300
        Principal components kept; clipped to ``min(n_images, n_features)`` (logged, and recorded in
        ``attrs['n_components']`` next to ``attrs['n_components_requested']``).
    random_state : int, numpy Generator or SeedSequence, default 0
        Seeds the PCA solver and the k-means initialisation; the same seed gives the same images.
    n_init : int, default 10
        k-means runs from different k-means++ initialisations; the one of lowest inertia is kept.

    Returns
    -------
    xarray.Dataset
        Dims ``cluster`` (k), ``component`` (components used), ``stimulus`` (the pool) and ``unit``
        (features). Variables:

        * ``index`` (cluster): position in the pool of the image selected for each cluster, in
          cluster order; all distinct;
        * ``distance`` (cluster): Euclidean distance in PCA space from the centre to that image;
        * ``nearest`` (cluster): whether that image is the centre's nearest one (False where it was
          taken by another centre, see Notes);
        * ``cluster_size`` (cluster): images of the pool in each cluster;
        * ``centre`` (cluster, component): the k-means centres;
        * ``explained_variance_ratio`` (component);
        * ``assignment`` (stimulus): the cluster of every pool image (plus the stimulus coordinates
          of a DataArray ``features``);
        * ``components`` (component, unit) and ``mean`` (unit): the projection, so that other images'
          features ``x`` map to the same space as ``(x - mean) @ components.T``.

        ``attrs``: k, n_components (used), n_components_requested, n_init, random_state, n_images,
        n_features, explained_variance (total ratio kept), inertia, reassigned (centres not given
        their nearest image), method and reference.

    Raises
    ------
    NetphysError
        ``features`` not 2-D or not numeric, with NaN/inf values, fewer than 2 images, or no variance
        across images; ``k`` outside ``[2, n_images]``; ``n_components`` or ``n_init`` < 1; a bad
        ``random_state``.

    Warns
    -----
    NetphysWarning
        When the pool has fewer distinct points than ``k`` (k-means then finds coinciding centres).

    Notes
    -----
    The features are centred but not scaled (PCA of the covariance, as the paper), so units with a
    larger output variance weigh more. With ``Z`` the scores on the first ``n_components`` principal
    components, k-means (Lloyd, scikit-learn :class:`~sklearn.cluster.KMeans`, k-means++ init)
    minimises ``sum_i ||z_i - c_{l(i)}||^2``. Each centre ``c_j`` then gets an image: the assignment
    minimising ``sum_j ||c_j - z_{s(j)}||`` over injective maps ``s`` (distinct images), solved exactly
    by :func:`scipy.optimize.linear_sum_assignment` on the centre x image distance matrix. When the
    nearest images of all centres are distinct this is each centre's nearest image; when several
    centres share a nearest image (coinciding centres, duplicated images) the total distance is the
    least possible with no image taken twice.

    The paper used mini-batch k-means on the 50,000 ImageNet validation images to save time; this
    uses full k-means (10,000 x 300 scores, k = 160, one initialisation: about 3 s on 2 CPU cores; time
    grows linearly with the images and with ``n_init``, which can be lowered for large pools).

    References
    ----------
    .. [1] Functional segregation of inputs in artificial neural networks for vision (under review),
       Methods, "Image dataset": PCA of AlexNet's pre-softmax output to the ImageNet validation
       images, top 300 components (about 95% of the variance), k-means with k clusters, the
       nearest neighbour of each centre; k = 160 ("diverseSet").
    """
    func = "diverse_subset"
    a, stim_coords = _as_matrix(features, func)
    n, f = a.shape
    k = check_int(k, "k", func, min_value=2, max_value=n)
    n_components = check_int(n_components, "n_components", func, min_value=1)
    n_init = check_int(n_init, "n_init", func, min_value=1)
    seed = _int_seed(random_state, func)
    if not np.any(a.std(axis=0) > 0):
        raise param_error("features", func, "features that vary across images",
                          f"{n} identical rows", "the network gives the same output to every image")
    z, pca, used = _embed(a, n_components, seed)
    km = _kmeans(z, k, seed, n_init, func)
    centres = km.cluster_centers_
    index, dist = _assign(centres, z)
    nearest = np.isclose(dist, np.sqrt(_sqdist(centres, z)).min(axis=1), rtol=1e-9, atol=1e-12)
    reassigned = int((~nearest).sum())
    if reassigned:
        log.info("%s: %d of %d centres share their nearest image with another centre and were given the "
                 "next best distinct image", func, reassigned, k)
    evr = pca.explained_variance_ratio_
    ds = xr.Dataset(
        {"index": ("cluster", index), "distance": ("cluster", dist), "nearest": ("cluster", nearest),
         "cluster_size": ("cluster", np.bincount(km.labels_, minlength=k)),
         "centre": (("cluster", "component"), centres),
         "explained_variance_ratio": ("component", evr),
         "assignment": ("stimulus", km.labels_.astype(np.int64)),
         "components": (("component", "unit"), pca.components_), "mean": ("unit", pca.mean_)},
        coords={"cluster": np.arange(k), "component": np.arange(used), "stimulus": np.arange(n),
                "unit": np.arange(f)},
        attrs={"k": k, "n_components": used, "n_components_requested": n_components, "n_init": n_init,
               "random_state": _seed_note(random_state), "seed": seed, "n_images": n, "n_features": f,
               "explained_variance": float(evr.sum()), "inertia": float(km.inertia_),
               "reassigned": reassigned,
               "method": "PCA (centred, unscaled) -> KMeans -> linear_sum_assignment of centres to images",
               "reference": _REFERENCE})
    for name, values in stim_coords.items():
        if name not in ds.variables:
            ds = ds.assign_coords({name: ("stimulus", values)})
    return ds


def coverage(features, index, *, n_random: int = 100, random_state=0, n_components: int = 300,
             n_init: int = 10) -> xr.Dataset:
    """How well a subset of images covers the pool, against random subsets of the same size.

    Parameters
    ----------
    features : array-like (n_images, n_features) or xarray.DataArray (stimulus, unit)
        The features the pool is compared in (as for :func:`diverse_subset`).
    index : array-like of int, or the Dataset returned by :func:`diverse_subset`
        Positions of the selected images in the pool: distinct, at least 2.
    n_random : int, default 100
        Random subsets (uniform, without replacement) of ``len(index)`` images.
    random_state : int, numpy Generator or SeedSequence, default 0
        Seeds the PCA and k-means (as in :func:`diverse_subset`: the same int seed gives the same
        clusters) and, through a spawned child seed, the random subsets.
    n_components : int, default 300
        Principal components of the space the distances are measured in (clipped as in
        :func:`diverse_subset`).
    n_init : int, default 10
        k-means initialisations for ``cluster_fraction``.

    Returns
    -------
    xarray.Dataset
        Dims ``metric`` and ``realisation`` (``n_random``). Variables: ``selected`` (metric), the
        subset's value; ``random`` (metric, realisation), the random subsets' values; ``random_mean``
        and ``random_std`` (metric); ``percentile`` (metric), the percentile of the selected value
        among the random values (ties count half: ``100 * (mean(r < s) + mean(r <= s)) / 2``), so 0
        means below every random subset and 100 above every one. Coordinate ``better`` (metric):
        ``"lower"`` or ``"higher"``. Metrics:

        * ``mean_nearest_distance``: mean over pool images of the distance to the nearest subset
          image (lower = better coverage);
        * ``max_nearest_distance``: its maximum, the covering radius (lower = better);
        * ``mean_pairwise_distance``: mean distance between subset images (higher = more spread);
        * ``cluster_fraction``: fraction of the ``len(index)`` k-means clusters of the pool that
          hold at least one subset image (higher = better).

        ``attrs``: n_random, k, n_components, random_state, n_images.

    Raises
    ------
    NetphysError
        Bad ``features`` (as :func:`diverse_subset`); ``index`` not 1-D ints in ``[0, n_images)``,
        with repeats, or of fewer than 2 images; ``n_random``, ``n_components`` or ``n_init`` < 1.

    Notes
    -----
    Distances are Euclidean, between PCA scores of the centred features. Each metric is one
    vectorised computation over the pool (an ``n_images x len(index)`` distance matrix); only the
    random subsets are looped over. With the seed of :func:`diverse_subset`, ``cluster_fraction``
    uses the selection's own clusters, so a diverse subset reaches about 1 by construction, and
    random subsets of k images about ``1 - (1 - 1/k)^k`` (0.63) when clusters have equal sizes; use
    another seed for an independent clustering.

    References
    ----------
    .. [1] Functional segregation of inputs in artificial neural networks for vision (under review),
       Figure 12: the coverage of the feature space by diverseSet 160.
    """
    func = "coverage"
    a, _ = _as_matrix(features, func)
    n = a.shape[0]
    if isinstance(index, xr.Dataset):
        if "index" not in index:
            raise param_error("index", func, "image positions or the Dataset of diverse_subset",
                              f"a Dataset without an 'index' variable ({list(index.data_vars)})")
        index = index["index"].values
    idx = np.asarray(index)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu") or idx.dtype == bool:
        raise param_error("index", func, "a 1-D array of int positions in the pool",
                          f"array of shape {idx.shape} and dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.size < 2:
        raise param_error("index", func, "at least 2 image positions", idx.tolist())
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        raise param_error("index", func, f"positions in [0, {n - 1}] (the pool has {n} images)",
                          int(idx[bad][0]))
    if np.unique(idx).size != idx.size:
        raise param_error("index", func, "distinct image positions", f"{idx.size - np.unique(idx).size} "
                          "repeated position(s)")
    n_random = check_int(n_random, "n_random", func, min_value=1)
    n_components = check_int(n_components, "n_components", func, min_value=1)
    n_init = check_int(n_init, "n_init", func, min_value=1)
    seed = _int_seed(random_state, func)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    m = idx.size
    z, _, used = _embed(a, n_components, seed)
    assignment = _kmeans(z, m, seed, n_init, func).labels_
    sq = (z * z).sum(1)
    selected = _subset_metrics(z, sq, idx, assignment, m)
    rand = np.stack([_subset_metrics(z, sq, rng.choice(n, m, replace=False), assignment, m)
                     for _ in range(n_random)], axis=1)
    pct = 50.0 * ((rand < selected[:, None]).mean(1) + (rand <= selected[:, None]).mean(1))
    names = list(_METRICS)
    return xr.Dataset(
        {"selected": ("metric", selected), "random": (("metric", "realisation"), rand),
         "random_mean": ("metric", rand.mean(1)), "random_std": ("metric", rand.std(1, ddof=1) if n_random > 1
                                                                else np.zeros(len(names))),
         "percentile": ("metric", pct)},
        coords={"metric": names, "realisation": np.arange(n_random),
                "better": ("metric", [_METRICS[k] for k in names])},
        attrs={"n_random": n_random, "k": m, "n_components": used, "n_components_requested": n_components,
               "n_init": n_init, "random_state": _seed_note(random_state), "seed": seed, "n_images": n,
               "reference": _REFERENCE})
