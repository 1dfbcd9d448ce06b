"""Single-unit Shannon information between an image feature and unit activations.

All estimators are vectorised over units: the joint histograms of every unit are built with a
single ``numpy.bincount`` over flattened ``(unit, x_symbol, y_bin)`` indices, so a layer of
250 units x 1500 images takes a few milliseconds; a shuffle null adds one such pass per shuffle.

The method follows Ansuini et al. (prune-and-distill seed, section 2.2) and METHODS.md A4:
feature X and activation Y of each unit are discretised in 20 equal-width bins over the observed
range, I(X;Y) is the plug-in estimate from the joint histogram, corrected for the limited-sampling
bias, and normalised by the entropy H(X) estimated with the same correction. The layer value is
the mean over units of the normalised information. Available corrections: Panzeri-Treves
(``"pt"``, the paper's), quadratic extrapolation (``"qe"``), a shuffle null (``"shuffle"``) and the
combinations ``"pt+shuffle"``, ``"qe+shuffle"``. ``docs/information.md`` tabulates their residual
bias against ground truth.
"""
from __future__ import annotations

#: version of this module's estimators, part of every experiment cache key that uses them; bump it when
#: a change alters their numbers (2: corrections pt/qe/shuffle, corrected-H(X) normalisation)
ESTIMATOR_VERSION = "2"

import logging
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .._random import check_random_state
from .._validation import NetphysWarning, check_choice, check_finite, check_int, param_error

log = logging.getLogger(__name__)

__all__ = [
    "CORRECTIONS",
    "MIN_SAMPLES_PER_CELL",
    "InformationResult",
    "equal_width_bins",
    "mutual_information",
    "layer_information",
]

_LN2 = math.log(2.0)
# Values per block of rows in the binning pass (its scratch arrays then stay in L2 cache).
_BLOCK = 2 ** 15
# Largest dense (unit, x symbol, y bin) histogram we agree to allocate (int64 -> 1 GiB).
_MAX_CELLS = 2 ** 27

#: Accepted values of ``correction`` (``"panzeri-treves"`` is an alias of ``"pt"``).
CORRECTIONS = ("pt", "qe", "shuffle", "pt+shuffle", "qe+shuffle", "none", "panzeri-treves")
#: Below this many samples per possible joint cell, :func:`mutual_information` warns.
MIN_SAMPLES_PER_CELL = 5.0
# --------------------------------------------------------------------------------------------
# binning
# --------------------------------------------------------------------------------------------
def _column_range(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-column min and max as float64, and whether all are finite (NaN/inf propagate)."""
    lo = a.min(axis=0).astype(np.float64)
    hi = a.max(axis=0).astype(np.float64)
    return lo, hi, bool(np.isfinite(lo).all() and np.isfinite(hi).all())


class _Binner:
    """Equal-width binning of the columns of a finite real ``(n, c)`` array, block by block.

    ``lo``/``hi`` are the column minima/maxima (:func:`_column_range`). :meth:`block` returns
    the codes (intp, in ``[0, bins)``) of a block of rows, computed in block-sized scratch
    arrays (:class:`_Scratch`); constant columns get code 0.

    Bin membership is exactly that of ``numpy.histogram`` / ``numpy.histogramdd`` with ``bins``
    equal-width bins over ``[min, max]``: edges ``e_k = k * step + min`` (the arithmetic of
    ``numpy.linspace``), half-open bins ``[e_k, e_{k+1})`` except the last, which is closed.
    The position ``(a - min) / step`` is truncated, and the few values within rounding error of
    an edge are settled with numpy's exact edge comparison.
    """

    def __init__(self, a: np.ndarray, bins: int, lo: np.ndarray, hi: np.ndarray):
        self.a, self.bins, self.lo, self.hi = a, bins, lo, hi
        c = a.shape[1]
        constant = hi == lo
        delta = hi - lo
        delta[constant] = 1.0
        self.step = step = delta / bins  # == numpy.linspace's step for (lo, hi, bins + 1)
        # Positions are computed in float32 for float32/float64 data (half the memory traffic,
        # twice the SIMD width), else in float64. tol is a generous bound on their rounding
        # error, in bin units: values closer than tol to an edge are settled exactly, so the
        # precision of the positions never changes a bin. Constant columns: no candidates
        # (their positions are all exactly 0).
        ft = np.float32 if a.dtype in (np.float32, np.float64) else np.float64
        tiny = step < np.finfo(np.float64).tiny  # subnormal step: numpy.linspace's own path
        safe_step = np.where(tiny, 1.0, step)
        scale_err = bins + np.maximum(np.abs(lo), np.abs(hi)) / safe_step
        tol = 64 * np.finfo(ft).eps * scale_err
        if ft is np.float32 and np.any(tol[~constant] > 1e-3):  # large offset vs range
            ft = np.float64
            tol = 64 * np.finfo(ft).eps * scale_err
        # columns whose range is below ~1e-14 of their magnitude (not even float64 positions
        # are within one bin of the truth) or whose step is subnormal are binned exactly by
        # `settle_exact` (rare)
        self.exact = np.flatnonzero(((tol > 0.25) | tiny) & ~constant)
        tol[constant] = -1.0
        tol[self.exact] = -1.0
        self.tol = tol.astype(ft)
        self.one_minus_tol = (1.0 - tol).astype(ft)
        # a - lo: in a's own precision for float32 positions (lo is an element of a, so it is
        # exact there, and a - lo >= 0; the result is rounded to float32), else in float64
        self.lo_sub = lo.astype(a.dtype) if ft is np.float32 else lo
        self.inv_step = (1.0 / safe_step).astype(ft)  # multiplying is cheaper than dividing
        self.ft = ft

    def block(self, r0: int, r1: int, scratch: _Scratch) -> np.ndarray:
        """Codes of rows ``r0:r1``, in ``scratch.codes`` (valid until its next use)."""
        shape = (r1 - r0, self.a.shape[1])
        ab = self.a[r0:r1]
        pb, fb = scratch.get("pos", self.ft, shape), scratch.get("flo", self.ft, shape)
        nb, nb2 = scratch.get("near", bool, shape), scratch.get("near2", bool, shape)
        cb = scratch.get("codes", np.intp, shape)
        # position in bin units and its floor (a - lo >= 0)
        np.subtract(ab, self.lo_sub, out=pb)
        pb *= self.inv_step
        np.floor(pb, out=fb)
        np.copyto(cb, fb, casting="unsafe")
        # fractional part -> candidates within rounding error of an edge
        pb -= fb
        np.less(pb, self.tol, out=nb)
        np.greater(pb, self.one_minus_tol, out=nb2)
        nb |= nb2
        cand = np.flatnonzero(nb)
        if cand.size:
            i, j = np.divmod(cand, cb.shape[1])
            v = ab[i, j].astype(np.float64)
            step, lo = self.step[j], self.lo[j]
            # the maximum (position ~bins, always a candidate) goes to the closed last bin
            k = np.minimum(cb[i, j], self.bins - 1)
            k -= v < k * step + lo
            k += (v >= (k + 1) * step + lo) & (k < self.bins - 1)
            cb[i, j] = k
        if self.exact.size:
            cb[:, self.exact] = 0  # see settle_exact
        return cb

    def settle_exact(self, out: np.ndarray, scale: int) -> None:
        """Add ``code * scale`` of the columns binned exactly (code 0 in :meth:`block`)."""
        for j in self.exact:
            edges = np.linspace(self.lo[j], self.hi[j], self.bins + 1)
            k = np.clip(np.searchsorted(edges, self.a[:, j], side="right") - 1, 0, self.bins - 1)
            if self.a.shape[1] == 1:
                out += (k * scale)[:, None]
            else:
                out[:, j] += k * scale


class _Scratch:
    """Block-sized work arrays shared by the :class:`_Binner` of one pass (8 bytes a value)."""

    def __init__(self, size: int):
        self._buf = {}
        self._size = size

    def get(self, role: str, dtype, shape: tuple[int, int]) -> np.ndarray:
        buf = self._buf.get(role)
        if buf is None:
            buf = self._buf[role] = np.empty(self._size, dtype=np.float64)
        return buf.view(dtype)[: shape[0] * shape[1]].reshape(shape)


def _binned_index(terms: list, n: int, c: int, offset: np.ndarray | None = None) -> np.ndarray:
    """``offset + sum_t scale_t * code_t``, an ``(n, c)`` intp array, in one blocked pass.

    Each term is ``(source, scale)``: a :class:`_Binner` (whose array has ``c`` or 1 columns,
    broadcast) or a precomputed intp code array of shape ``(n, c)`` or ``(n, 1)``. Rows are
    processed in blocks of about ``_BLOCK`` values so that temporaries stay in cache and the
    only large array allocated is the result (fresh multi-MB temporaries cost more in page
    faults than the arithmetic itself).
    """
    out = np.empty((n, c), dtype=np.intp)
    if offset is None:
        offset = np.zeros(c, dtype=np.intp)
    rows = _rows_per_block(n, c)
    scratch = _Scratch(rows * c)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        ob = out[r0:r1]
        np.copyto(ob, offset)
        for source, scale in terms:
            if isinstance(source, _Binner):
                cb = source.block(r0, r1, scratch)
                if scale != 1:
                    cb *= scale
            else:
                cb = source[r0:r1] if scale == 1 else source[r0:r1] * scale
            ob += cb
    for source, scale in terms:
        if isinstance(source, _Binner):
            source.settle_exact(out, scale)
    return out


def _rows_per_block(n: int, c: int) -> int:
    return max(1, min(n, _BLOCK // c))


def equal_width_bins(values, bins: int = 20, *, return_constant: bool = False):
    """Discretise each column into equal-width bins over its observed range.

    Parameters
    ----------
    values : array_like, shape (n_samples,) or (n_samples, n_columns)
        Real values, one column per unit (or per feature dimension). Must be finite.
    bins : int, default 20
        Number of equal-width bins per column (>= 2).
    return_constant : bool, default False
        Also return a boolean mask of the constant columns.

    Returns
    -------
    codes : ndarray of intp, same shape as ``values``
        Bin index in ``[0, bins)`` of every value. Constant columns are all 0.
    constant : ndarray of bool, shape (n_columns,) or ()
        Only if ``return_constant``: True for constant columns (a single occupied bin, so a
        binned entropy of exactly 0).

    Raises
    ------
    NetphysError
        If ``bins`` is not an int >= 2, ``values`` is empty, not 1-D or 2-D, not numeric or
        holds NaN or inf.

    Notes
    -----
    Column :math:`j` with range :math:`[m_j, M_j]` is cut at the edges
    :math:`e_k = m_j + k (M_j - m_j) / B`, :math:`k = 0..B`; value :math:`v` gets code
    :math:`k` if :math:`e_k \\le v < e_{k+1}`, and the maximum goes to the last bin. The
    assignment is identical to ``numpy.histogram(column, bins)`` (the same linspace edges
    and edge rule), computed for all columns at once. A constant column gets code 0
    everywhere (``numpy.histogram`` would use the middle bin of ``[m - 0.5, m + 0.5]``;
    either way a single bin is occupied and its entropy is 0). Constant columns are counted
    in a DEBUG log record.

    Examples
    --------
    >>> equal_width_bins([0.0, 0.4, 1.0, 0.5], bins=2)
    array([0, 0, 1, 1])
    """
    func = "equal_width_bins"
    bins = check_int(bins, "bins", func, min_value=2)
    a = _as_real(values, "values", func)
    if a.ndim not in (1, 2) or a.size == 0:
        raise param_error("values", func, "a non-empty 1-D or 2-D array",
                          f"an array of shape {a.shape}")
    a2 = a.reshape(a.shape[0], -1)
    lo, hi, finite = _column_range(a2)
    if not finite:
        check_finite(a, "values", func)
    constant = hi == lo
    n, c = a2.shape
    codes = _binned_index([(_Binner(a2, bins, lo, hi), 1)], n, c)
    if constant.any():
        log.debug("equal_width_bins: %d of %d column(s) are constant (all in bin 0)",
                  int(constant.sum()), constant.size)
    if a.ndim == 1:
        codes, constant = codes[:, 0], constant[0]
    return (codes, constant) if return_constant else codes


def _as_real(values, param: str, func: str) -> np.ndarray:
    a = np.asarray(values)
    if a.dtype.kind not in "biuf":
        raise param_error(param, func, "a real-valued numeric array", f"dtype {a.dtype}")
    return a


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class InformationResult:
    """Per-unit information estimates returned by :func:`mutual_information`.

    All arrays have shape ``(n_units,)``; information and entropies are in bits.

    Attributes
    ----------
    mi : ndarray of float
        Bias-corrected information ``mi_plugin - bias`` (not clipped: it can be slightly
        negative for units that carry no information; see the Notes of
        :func:`mutual_information`).
    mi_plugin : ndarray of float
        Plug-in ("naive") information from the joint histogram, >= 0.
    bias : ndarray of float
        Everything subtracted from ``mi_plugin``: the Panzeri-Treves bias, or
        ``mi_plugin`` minus the extrapolated value, plus the shuffle null for the
        ``"+shuffle"`` corrections (0 with ``correction="none"``).
    h_x, h_y : ndarray of float
        Plug-in entropies of the binned feature and of the binned activation.
    h_x_corrected : ndarray of float
        The entropy of X under the base correction (``"none"``: ``h_x``; ``"pt"``:
        Miller-Madow ``h_x + (R_x - 1) / (2 N ln 2)``; ``"qe"``: extrapolated), i.e. the
        information the estimator assigns to a response that determines X. The denominator of
        ``normalized``.
    normalized : ndarray of float
        ``min(mi / h_x_corrected, 1)``, defined as 0 where ``h_x == 0`` (see ``x_constant``).
    null, null_sd : ndarray of float
        Mean and SD over the ``n_shuffles`` label shuffles of the normalised information under
        the *base* correction (``"pt"`` for ``"pt"`` and ``"pt+shuffle"``, ``"qe"`` for
        ``"qe"``/``"qe+shuffle"``, plug-in for ``"none"``/``"shuffle"``): what the estimator
        gives for these marginals and no relation. NaN when ``n_shuffles == 0`` (``null_sd``
        also when ``n_shuffles == 1``).
    null_mi : ndarray of float
        Mean over shuffles of the base-corrected information in bits (NaN if no shuffles).
    x_constant, y_constant : ndarray of bool
        True where the binned feature (resp. activation) occupies a single bin, i.e. has zero
        entropy. Such units carry exactly 0 information (``mi``, ``mi_plugin``, ``bias``,
        ``normalized`` and the null are set to 0, never NaN).
    r_x, r_y, r_xy : ndarray of int
        Number of non-empty feature, activation and joint bins (the "naive" counts).
    n_samples : int
        Number of stimuli N used for every unit.
    correction : str
        One of ``"pt"``, ``"qe"``, ``"shuffle"``, ``"pt+shuffle"``, ``"qe+shuffle"``, ``"none"``.
    bias_counting : str
        ``"naive"`` or ``"bayesian"`` (how relevant bins were counted for the PT correction).
    n_shuffles : int
        Number of label shuffles K.
    random_state : int
        The seed that reproduces the shuffles and subsamples (the int passed, or one drawn from
        the Generator / fresh entropy passed).
    bins, x_bins : int
        Activation bins and bins per feature dimension (``x_bins`` = number of label symbols if
        ``x_discrete``).
    n_cells : int
        Number of possible joint cells ``(x symbols) x bins``.
    samples_per_cell : float
        ``n_samples / n_cells``.
    sample_size_ok : bool
        ``samples_per_cell >= MIN_SAMPLES_PER_CELL`` (5).
    warnings : tuple of str
        The messages of the :class:`~netphys._validation.NetphysWarning` issued for this result.
    """

    mi: np.ndarray
    mi_plugin: np.ndarray
    bias: np.ndarray
    h_x: np.ndarray
    h_y: np.ndarray
    normalized: np.ndarray
    x_constant: np.ndarray
    y_constant: np.ndarray
    r_x: np.ndarray
    r_y: np.ndarray
    r_xy: np.ndarray
    n_samples: int
    correction: str
    bias_counting: str
    h_x_corrected: np.ndarray
    null: np.ndarray
    null_sd: np.ndarray
    null_mi: np.ndarray
    n_shuffles: int
    random_state: int
    bins: int
    x_bins: int
    n_cells: int
    samples_per_cell: float
    sample_size_ok: bool
    warnings: tuple

    per_unit_fields: ClassVar[tuple[str, ...]] = (
        "mi", "mi_plugin", "bias", "h_x", "h_y", "normalized", "x_constant", "y_constant",
        "r_x", "r_y", "r_xy", "h_x_corrected", "null", "null_sd", "null_mi")
    attr_fields: ClassVar[tuple[str, ...]] = (
        "n_samples", "correction", "bias_counting", "n_shuffles", "random_state", "bins",
        "x_bins", "n_cells", "samples_per_cell", "sample_size_ok")

    @property
    def n_units(self) -> int:
        """Number of units."""
        return int(self.mi.shape[0])

    def to_dataframe(self):
        """One row per unit, one column per per-unit array (``pandas.DataFrame``)."""
        import pandas as pd

        df = pd.DataFrame({name: getattr(self, name) for name in self.per_unit_fields})
        df.index.name = "unit"
        return df

    def to_xarray(self, unit_coords=None):
        """The per-unit arrays as an ``xarray.Dataset`` along dimension ``unit``.

        Parameters
        ----------
        unit_coords : pandas.DataFrame or dict, optional
            Per-unit coordinates (e.g. ``layer``, ``channel``, ``row``, ``col``), one value per
            unit: the columns of a DataFrame (its index is ignored) or the items of a dict of
            arrays. A column named ``unit`` becomes the index coordinate of ``unit``.

        Returns
        -------
        xarray.Dataset
            Variables ``per_unit_fields`` along ``unit``; ``attrs`` hold ``attr_fields``
            (``n_samples``, ``correction``, ``bias_counting``, ``n_shuffles``, ``random_state``,
            ``bins``, ``x_bins``, ``n_cells``, ``samples_per_cell``, ``sample_size_ok``) and
            ``warnings`` (a list of str).

        Raises
        ------
        NetphysError
            If ``unit_coords`` is not a DataFrame or dict, or a coordinate does not have one
            value per unit.
        """
        import xarray as xr

        func = "InformationResult.to_xarray"
        coords = {}
        if unit_coords is not None:
            try:
                import pandas as pd
                is_df = isinstance(unit_coords, pd.DataFrame)
            except ImportError:  # pragma: no cover - pandas is a dependency of xarray
                is_df = False
            if is_df:
                items = {str(c): unit_coords[c].to_numpy() for c in unit_coords.columns}
            elif isinstance(unit_coords, dict):
                items = {str(k): np.asarray(v) for k, v in unit_coords.items()}
            else:
                raise param_error("unit_coords", func, "None, a pandas DataFrame or a dict",
                                  type(unit_coords).__name__)
            for name, values in items.items():
                if values.ndim != 1 or values.shape[0] != self.n_units:
                    raise param_error("unit_coords", func,
                                      f"per-unit coordinates with {self.n_units} values each",
                                      f"{name!r} of shape {values.shape}")
                coords[name] = ("unit", values)
        attrs = {name: getattr(self, name) for name in self.attr_fields}
        attrs["sample_size_ok"] = int(attrs["sample_size_ok"])  # netCDF has no bool
        attrs["warnings"] = list(self.warnings)
        return xr.Dataset({name: ("unit", getattr(self, name)) for name in self.per_unit_fields},
                          coords=coords, attrs=attrs)
# --------------------------------------------------------------------------------------------
# Panzeri-Treves "Bayesian" count of relevant bins
# --------------------------------------------------------------------------------------------
def _bayesian_bin_count(counts: np.ndarray) -> np.ndarray:
    """Panzeri & Treves (1996) Bayesian estimate of the number of relevant bins, row-wise.

    ``counts`` is ``(n_distributions, dim)`` with a positive total in every row. Returns a
    float array of integer-valued estimates in ``[R_naive, dim]``. See the Notes of
    :func:`mutual_information`.
    """
    counts = np.asarray(counts, dtype=np.float64)
    dim = counts.shape[1]
    occupied = counts > 0
    r = occupied.sum(axis=1).astype(np.float64)
    result = r.copy()
    todo = np.flatnonzero(r < dim)
    if todo.size == 0:
        return result
    c, occ, r_t = counts[todo], occupied[todo], r[todo]
    n = c.sum(axis=1)
    p = c / n[:, None]
    # mismatch with no extra bin: |R - sum_occupied (1 - (1 - p)^n)| = sum_occupied (1 - p)^n
    prev = np.where(occ, (1.0 - p) ** n[:, None], 0.0).sum(axis=1)
    best = np.zeros_like(r_t)
    going = np.ones(todo.size, dtype=bool)
    g1 = 1.0 - (n / (n + r_t)) ** (1.0 / n)
    for extra in range(1, dim):
        going &= r_t + extra <= dim
        if not going.any():
            break
        gamma = extra * g1
        q_occ = ((1.0 - gamma) / (n + r_t))[:, None] * (c + 1.0)
        r_exp = np.where(occ, 1.0 - (1.0 - q_occ) ** n[:, None], 0.0).sum(axis=1)
        r_exp += extra * (1.0 - (1.0 - gamma / extra) ** n)
        delta = np.abs(r_t - r_exp)
        going &= delta < prev
        best[going] = extra
        prev = np.where(going, delta, prev)
    result[todo] = r_t + best
    return result


# --------------------------------------------------------------------------------------------
# mutual information
# --------------------------------------------------------------------------------------------
_FUNC = "mutual_information"


def _check_y(y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the activations; return them with their per-unit min and max."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise param_error("y", _FUNC, "a real-valued numeric array", f"dtype {y.dtype}")
    if y.ndim != 2 or y.shape[0] == 0 or y.shape[1] == 0:
        raise param_error("y", _FUNC, "a non-empty 2-D array of shape (n_samples, n_units)",
                          f"an array of shape {y.shape}",
                          "pass y[:, None] for a single unit" if y.ndim == 1 and y.size else None)
    lo, hi, finite = _column_range(y)
    if not finite:  # NaN and inf propagate to the min/max: count them only on this path
        n_nan = int(np.isnan(y).sum())
        n_inf = int(np.isinf(y).sum())
        raise param_error("y", _FUNC, "finite", f"{n_nan} NaN activations and {n_inf} "
                          f"infinite activations in an array of shape {y.shape}",
                          "drop or impute the stimuli with missing activations first")
    return y, lo, hi


def _x_shape_error(x_shape, n: int, u: int, discrete: bool):
    allowed = (f"(n_samples,), (n_samples, n_units) or (n_samples, 1) with n_samples={n}, "
               f"n_units={u}")
    if not discrete:
        allowed += ", or for a jointly binned multi-dimensional feature (n_samples, 2) or " \
                   "(n_samples, n_units or 1, n_dims)"
    return param_error("x", _FUNC, "an array of shape " + allowed, f"an array of shape {x_shape}")


def _discrete_codes(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Label codes (fresh intp array of the shape of ``x``) and the number of code values."""
    if x.dtype.kind in "biu":
        xi = x.astype(np.intp)
        lo, hi = int(xi.min()), int(xi.max())
        if hi - lo < 1024:  # small integer labels: offset them, no sort needed
            xi -= lo
            return xi, hi - lo + 1
    symbols, codes = np.unique(x, return_inverse=True)
    return codes.reshape(x.shape).astype(np.intp, copy=False), int(symbols.size)


def _prepare_x(x, n: int, u: int, x_bins: int, discrete: bool,
               y_bins: int) -> tuple[list, int]:
    """Validate the feature; return ``(terms, n_symbols)`` for :func:`_binned_index`.

    The terms add ``x_symbol * y_bins`` to the histogram index: one :class:`_Binner` per
    feature dimension (symbol = sum_d code_d * x_bins**(n_dims - 1 - d)), or the label codes.
    Their arrays have ``u`` columns (per-unit feature) or 1 (shared, broadcast).
    """
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] != n:
        raise param_error("x", _FUNC, f"an array with as many rows as 'y' (n_samples={n})",
                          f"an array of shape {x.shape}", "x and y must describe the same stimuli")
    if discrete:
        if x.ndim == 1:
            x = x[:, None]
        if not (x.ndim == 2 and x.shape[1] in (1, u)):
            raise _x_shape_error(x.shape, n, u, True)
        if x.dtype.kind == "O":
            raise param_error("x", _FUNC, "an array of labels of one plain dtype (int, str...)",
                              "dtype object")
        if x.dtype.kind == "f":
            check_finite(x, "x", _FUNC)
        codes, k = _discrete_codes(x)
        return [(codes, y_bins)], k

    x = _as_real(x, "x", _FUNC)
    if x.ndim == 1:
        x3 = x[:, None, None]
    elif x.ndim == 2:
        if x.shape[1] == u:  # per-unit feature (takes precedence, also when u == 2)
            x3 = x[:, :, None]
        elif x.shape[1] == 1:
            x3 = x[:, :, None]
        elif x.shape[1] == 2:  # shared 2-D feature, binned jointly
            x3 = x[:, None, :]
        else:
            raise _x_shape_error(x.shape, n, u, False)
    elif x.ndim == 3 and x.shape[1] in (1, u) and x.shape[2] >= 1:
        x3 = x
    else:
        raise _x_shape_error(x.shape, n, u, False)
    n_dims = x3.shape[2]
    terms = []
    for d in range(n_dims):
        cols = x3[:, :, d]
        lo, hi, finite = _column_range(cols)
        if not finite:
            check_finite(x, "x", _FUNC)
        terms.append((_Binner(cols, x_bins, lo, hi), y_bins * x_bins ** (n_dims - 1 - d)))
    return terms, x_bins ** n_dims


_SHUFFLE_CORRECTIONS = ("shuffle", "pt+shuffle", "qe+shuffle")
_BASE = {"pt": "pt", "qe": "qe", "none": "none", "shuffle": "none", "pt+shuffle": "pt",
         "qe+shuffle": "qe"}
# smallest N for the quadratic extrapolation (quarters of at least 2 samples)
_QE_MIN_SAMPLES = 8


def _resolve_seed(random_state) -> int:
    """An int seed that reproduces the draws: the int itself, else one drawn once."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        check_random_state(random_state, _FUNC)  # validates (non-negative)
        return int(random_state)
    if isinstance(random_state, np.random.SeedSequence):
        return int(random_state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    rng = check_random_state(random_state, _FUNC)  # None -> fresh entropy; validates the rest
    return int(rng.integers(2 ** 63))


def _qe_weights(n_full: int, n_half: int, n_quarter: int) -> np.ndarray:
    """Weights w with I_inf = w . (I_N, I_half, I_quarter) for I(N) = I_inf + a/N + b/N^2.

    The exact fit through the three points (t_k, I_k), t = 1/N, evaluated at t = 0: the
    Lagrange basis polynomials at 0, ``w_k = prod_{j != k} t_j / (t_j - t_k)``.
    """
    t = 1.0 / np.array([n_full, n_half, n_quarter], dtype=np.float64)
    w = np.ones(3)
    for k in range(3):
        for j in range(3):
            if j != k:
                w[k] *= t[j] / (t[j] - t[k])
    return w


class _Estimator:
    """Base estimate (plug-in, PT or QE) of every unit from flattened joint-cell indices.

    ``idx`` is the ``(n, u)`` array ``unit * kx * bins + x_symbol * bins + y_bin`` of one data
    set (the real pairing or a shuffle); the QE subsamples are fixed row partitions, shared by
    the real data and its shuffles.
    """

    def __init__(self, n: int, u: int, kx: int, bins: int, base: str, counting: str,
                 rng: np.random.Generator | None):
        self.n, self.u, self.kx, self.bins = n, u, kx, bins
        self.base, self.counting = base, counting
        self.x_cols = None  # for discrete X: the symbols that occur (set by the caller)
        t = np.arange(n + 1, dtype=np.float64)
        self.xlogx = t * np.log(np.maximum(t, 1.0))  # n log n, with 0 log 0 = 0
        self.parts = []
        if base == "qe":
            perm = rng.permutation(n)
            half, quarter = n // 2, n // 4
            self.parts = [[perm[k * half:(k + 1) * half] for k in range(2)],
                          [perm[k * quarter:(k + 1) * quarter] for k in range(4)]]
            self.qe_w = _qe_weights(n, half, quarter)

    def counts(self, idx: np.ndarray) -> np.ndarray:
        u, kx, b = self.u, self.kx, self.bins
        return np.bincount(idx.ravel(), minlength=u * kx * b).reshape(u, kx, b)

    def plugin(self, joint: np.ndarray, m: int, with_h_x: bool = False):
        """Plug-in information (bits) of counts of ``m`` samples; and H(X) if asked."""
        u, xlogx = self.u, self.xlogx
        cx = joint.sum(axis=2)
        cy = joint.sum(axis=1)
        s_xy = xlogx[joint].reshape(u, -1).sum(axis=1)
        s_x = xlogx[cx].sum(axis=1)
        s_y = xlogx[cy].sum(axis=1)
        log_m = math.log(m)
        mi = np.maximum((log_m + (s_xy - s_x - s_y) / m) / _LN2, 0.0)
        if not with_h_x:
            return mi
        return mi, np.maximum((log_m - s_x / m) / _LN2, 0.0), cx, cy

    def pt_bias(self, joint: np.ndarray, cx: np.ndarray, cy: np.ndarray,
                with_h_x: bool = False):
        """Panzeri-Treves bias of the information (and of H(X), with the same counting)."""
        u, n = self.u, self.n
        if self.counting == "naive":
            r_xy = np.count_nonzero(joint.reshape(u, -1), axis=1)
            r_x = np.count_nonzero(cx, axis=1)
            r_y = np.count_nonzero(cy, axis=1)
            bias = (r_xy - r_x - r_y + 1) / (2.0 * n * _LN2)
            if not with_h_x:
                return bias
            return bias, (r_x - 1) / (2.0 * n * _LN2)
        # conditional activation distributions P(y | x) for the feature symbols that occur
        rows = joint.reshape(-1, joint.shape[2])
        present = np.flatnonzero(cx.ravel() > 0)
        cond = _bayesian_bin_count(rows[present])
        sum_cond = np.bincount(present // joint.shape[1], weights=cond - 1.0, minlength=u)
        marg = _bayesian_bin_count(cy)
        bias = (sum_cond - (marg - 1.0)) / (2.0 * n * _LN2)
        if not with_h_x:
            return bias
        # H(X) = I(X; X): every conditional has a single bin (count 1), the marginal of X is
        # counted over its possible symbols (the labels that occur, for discrete X)
        if self.x_cols is not None:
            cx = cx[:, self.x_cols]
        return bias, (_bayesian_bin_count(cx) - 1.0) / (2.0 * n * _LN2)

    def qe(self, idx: np.ndarray, full_mi: np.ndarray, full_h_x: np.ndarray | None = None):
        """Quadratic extrapolation (Strong et al. 1998) of the information (and of H(X))."""
        mi_k = [full_mi]
        h_k = [full_h_x]
        for group in self.parts:
            mi_acc = np.zeros(self.u)
            h_acc = np.zeros(self.u)
            for rows in group:
                joint = self.counts(idx[rows])
                if full_h_x is None:
                    mi_acc += self.plugin(joint, rows.size)
                else:
                    mi_s, h_s, _, _ = self.plugin(joint, rows.size, with_h_x=True)
                    mi_acc += mi_s
                    h_acc += h_s
            mi_k.append(mi_acc / len(group))
            h_k.append(h_acc / len(group))
        w = self.qe_w
        mi = w[0] * mi_k[0] + w[1] * mi_k[1] + w[2] * mi_k[2]
        if full_h_x is None:
            return mi
        return mi, w[0] * h_k[0] + w[1] * h_k[1] + w[2] * h_k[2]

    def base_mi(self, idx: np.ndarray) -> np.ndarray:
        """Base-corrected information of one data set (used for the shuffles)."""
        joint = self.counts(idx)
        if self.base == "none":
            return self.plugin(joint, self.n)
        if self.base == "qe":
            return self.qe(idx, self.plugin(joint, self.n))
        mi, _, cx, cy = self.plugin(joint, self.n, with_h_x=True)
        return mi - self.pt_bias(joint, cx, cy)
def mutual_information(x, y, *, bins: int = 20, x_bins: int | None = None,
                       x_discrete: bool = False, correction: str = "pt", n_shuffles: int = 20,
                       random_state=0, bias_counting: str = "naive") -> InformationResult:
    """Shannon information between a feature and each unit's activation, for all units at once.

    Parameters
    ----------
    x : array_like
        The feature X, one of:

        - ``(n_samples,)``: one feature value per stimulus, shared by all units;
        - ``(n_samples, n_units)``: a different feature column per unit (e.g. luminosity in each
          unit's receptive field, or features of a per-unit image subset);
        - ``(n_samples, 2)``: a shared 2-D feature (e.g. the corner pair of orientations, see
          :func:`netphys.stats.corner_coordinates`), binned jointly; used only when
          ``n_units != 2`` (otherwise the array is read as per-unit; pass
          ``(n_samples, 1, 2)`` to be explicit);
        - ``(n_samples, n_units, n_dims)`` or ``(n_samples, 1, n_dims)``: a per-unit (or
          shared) multi-dimensional feature; each dimension is cut into ``x_bins`` bins and the
          joint cell is the symbol.

        With ``x_discrete=True``, ``(n_samples,)`` or ``(n_samples, n_units)`` category labels.
    y : array_like, shape (n_samples, n_units)
        Activations, one column per unit. Must be finite.
    bins : int, default 20
        Number of equal-width bins for the activations (and for x unless ``x_bins``).
    x_bins : int, optional
        Number of equal-width bins per feature dimension (default: ``bins``). Ignored if
        ``x_discrete``.
    x_discrete : bool, default False
        If True, ``x`` holds category labels (e.g. the image label for category information),
        used as symbols without binning.
    correction : {"pt", "qe", "shuffle", "pt+shuffle", "qe+shuffle", "none"}, default "pt"
        Limited-sampling bias correction (``"panzeri-treves"`` is accepted as an alias of
        ``"pt"``): Panzeri-Treves, quadratic extrapolation, subtraction of the shuffle null of
        the plug-in estimate, subtraction of the shuffle null of the PT (QE) estimate, or none.
        See the Notes and ``docs/information.md`` for their residual bias.
    n_shuffles : int, default 20
        Number K of label shuffles for the null (``null``, ``null_sd``, ``null_mi``), computed
        for every correction when K > 0 and subtracted by the ``"+shuffle"`` corrections (which
        need K >= 1). 0 skips the null (the fastest path). Each shuffle costs about one extra
        pass of the base estimator (three for ``"qe"``).
    random_state : None, int, SeedSequence or numpy Generator, default 0
        Seed of the shuffles and of the QE subsamples. The same seed gives the same numbers;
        the int seed actually used is recorded in ``result.random_state``.
    bias_counting : {"naive", "bayesian"}, default "naive"
        How the Panzeri-Treves correction counts relevant bins: non-empty bins, or the Bayesian
        estimate of Panzeri & Treves (1996). Used by ``"pt"`` and ``"pt+shuffle"`` only.

    Returns
    -------
    InformationResult
        Per-unit arrays of shape ``(n_units,)``: ``mi`` (corrected, bits), ``mi_plugin``,
        ``bias``, ``h_x``, ``h_y``, ``h_x_corrected``, ``normalized``, ``null``, ``null_sd``,
        ``null_mi``, ``x_constant``, ``y_constant``, ``r_x``, ``r_y``, ``r_xy``; and the settings
        (``n_samples``, ``correction``, ``n_shuffles``, ``random_state``, ``bins``, ``x_bins``),
        ``n_cells``, ``samples_per_cell``, ``sample_size_ok`` and ``warnings``. The layer value
        :math:`U` is ``result.normalized.mean()`` (see :func:`layer_information`).

    Raises
    ------
    NetphysError
        If ``bins`` or ``x_bins`` is not an int >= 2 or exceeds the number of samples; if ``y``
        is not a non-empty 2-D array or holds NaN/inf; if ``x`` has a shape that does not match
        ``y`` or holds NaN/inf; if ``correction`` or ``bias_counting`` is not a known option;
        if ``n_shuffles`` is not an int >= 0 (>= 1 for a ``"+shuffle"`` correction); if
        ``random_state`` is invalid; if ``"qe"`` gets fewer than 8 samples; or if the joint
        histogram would be unreasonably large.

    Warns
    -----
    NetphysWarning
        If there are fewer than ``MIN_SAMPLES_PER_CELL`` = 5 samples per possible joint cell,
        ``n_samples < 5 * n_x_symbols * bins`` with ``n_x_symbols = x_bins ** n_dims`` (binned
        feature) or the number of distinct labels (``x_discrete``). The message is also stored
        in ``result.warnings`` and ``result.sample_size_ok`` is False.

    Notes
    -----
    **Binning.** Each activation column and each feature column (each dimension of a
    multi-dimensional feature) is cut into equal-width bins over its own observed range
    (:func:`equal_width_bins`). A d-dimensional feature is one symbol per joint cell,
    :math:`x = \\sum_k c_k B_x^{d-1-k}` with :math:`B_x^d` possible symbols. All estimators
    and shuffles work on these fixed symbols (the subsamples of ``"qe"`` are not re-binned).

    **Plug-in information.** From the joint counts :math:`n_{xy}` of N stimuli, with marginals
    :math:`n_x`, :math:`n_y`,

    .. math::

        I_{plugin} = \\sum_{x,y} \\frac{n_{xy}}{N} \\log_2 \\frac{n_{xy} N}{n_x n_y}
                   = \\log_2 N + \\frac{1}{N}\\Big(\\sum n_{xy}\\log_2 n_{xy}
                     - \\sum n_x \\log_2 n_x - \\sum n_y \\log_2 n_y\\Big),

    and :math:`H(X) = \\log_2 N - \\frac1N \\sum_x n_x \\log_2 n_x` (likewise H(Y)). Rounding
    below zero (~1e-16) is clipped, so ``mi_plugin >= 0``.

    **Panzeri-Treves correction** (``"pt"``). To first order in 1/N the plug-in estimate is
    biased upwards by

    .. math::

        \\mathrm{bias} = \\frac{1}{2 N \\ln 2}\\Big[\\sum_x (\\tilde R_{y|x} - 1)
                        - (\\tilde R_y - 1)\\Big]

    bits, where :math:`\\tilde R_{y|x}` is the number of relevant activation bins given feature
    symbol x (over the symbols that occur) and :math:`\\tilde R_y` that of the activation
    marginal. With ``bias_counting="naive"`` relevant bins are non-empty bins, and the sum
    collapses to the familiar :math:`(R_{xy} - R_x - R_y + 1) / (2 N \\ln 2)`. ``mi = mi_plugin
    - bias``.

    With ``bias_counting="bayesian"`` each :math:`\\tilde R` is the Bayesian estimate of
    Panzeri & Treves (1996): for a distribution of n samples with :math:`R` non-empty bins out of
    ``dim`` possible (``dim = bins``, the activation bins), candidate totals
    :math:`R + k`, :math:`k = 0, 1, \\dots, dim - R`, are tried in turn. For k extra bins the
    probabilities are re-estimated as :math:`q_i = (1-\\gamma)(n_i + 1)/(n + R)` on the
    occupied bins and :math:`\\gamma / k` on each of the k extra ones, with
    :math:`\\gamma = k\\,[1 - (n/(n+R))^{1/n}]`; the expected number of occupied bins is
    :math:`\\sum_i [1 - (1 - q_i)^n]` (for k = 0, with :math:`q_i = n_i/n`). The count is
    increased while this expectation gets closer to the observed R, and :math:`\\tilde R` is
    R + k at the first minimum of the mismatch (as in the Information Breakdown Toolbox's
    ``bayescount``). Each estimate is >= the naive count; since the conditional distributions
    have fewer samples than the marginal they gain more bins, so in practice the correction is
    larger. The naive count is the default, as in METHODS.md A4.

    The PT formula is asymptotic: it is accurate when N is large compared with the number of
    joint cells. Below a few samples per cell it under-corrects (the plug-in bias is then
    smaller than its asymptote but the occupied-bin counts shrink faster), and the residual is
    of the order of the effects reported in the paper: on independent data with 20 x 20 bins,
    +0.070 (normalised) at N = 400, +0.024 at N = 1000 and +0.004 at N = 5000; on the 2-D corner
    feature (20 x 20 x 20 cells, 400 images) +0.34 (tabulated in ``docs/information.md``).

    **Quadratic extrapolation** (``"qe"``, Strong et al. 1998). The plug-in estimate is
    computed on all N samples, on the two halves and on the four quarters of one random
    partition of the samples (halves of ``N // 2`` and quarters of ``N // 4`` samples; the
    remainder is left out of the subsamples), averaged within each size, and the exact fit of
    :math:`I(n) = I_\\infty + a/n + b/n^2` through the three points gives :math:`I_\\infty`:
    ``mi = w . (I_N, I_{N/2}, I_{N/4})`` with the Lagrange weights of the fit at :math:`1/n = 0`
    (for even N divisible by 4: w = (8, -6, 1)/3). It is unbiased to second order in 1/N when
    N is large enough for the expansion to hold, but its variance is several times that of PT.

    **Shuffle null** (``"shuffle"``, ``"pt+shuffle"``, ``"qe+shuffle"``). For each of K
    shuffles the activations of every unit are permuted across stimuli, independently per unit
    (destroying the relation, keeping both marginals), and the base estimate (plug-in, PT or
    QE) is recomputed. ``null_mi`` is its mean over shuffles, ``null`` the mean of its
    normalised value and ``null_sd`` the SD over shuffles. The ``"+shuffle"`` corrections
    report ``mi = base - null_mi``: on independent data this is unbiased at any N (the real
    data are then exchangeable with their shuffles), at the price of the null's sampling noise
    (variance ``(1 + 1/K)`` times that of the base estimate) and, for dependent data, a slight
    over-correction (the shuffled table has more occupied cells than the real one). For
    ``"pt"``, ``"qe"`` and ``"none"`` the null is computed but not subtracted, so that it can
    be reported next to the estimate.

    **No clipping at 0.** For units carrying no information the corrected estimate scatters
    around 0 and is sometimes negative. ``mi`` and ``normalized`` are reported unclipped below:
    the layer value is a mean over units, and clipping each unit at 0 would bias that mean
    upwards by :math:`E[\\max(0, -\\hat I)]`, i.e. turn a correctly corrected layer mean of 0
    into a positive number (most visible in the random-network baselines). Clip per-unit values
    yourself (``np.maximum(result.mi, 0)``) only for display.

    **Normalisation.** ``normalized = min(mi / h_x_corrected, 1)``: the information as a
    fraction of the feature entropy, as in the paper, with the entropy estimated by the *same*
    estimator applied to a response that determines X (the self-information I(X;X)):
    plug-in H(X) for ``"none"``/``"shuffle"``; the Miller-Madow entropy
    :math:`H(X) + (\\tilde R_x - 1)/(2 N \\ln 2)` for ``"pt"``/``"pt+shuffle"`` (the PT
    correction of I(X;X), with :math:`\\tilde R_x` counted naively or, for
    ``bias_counting="bayesian"``, by the Bayesian count over the possible symbols); the
    extrapolated H(X) from the same subsamples for ``"qe"``/``"qe+shuffle"``. Numerator and
    denominator then carry the same bias correction. For a bijection (the activation bins
    determine X and vice versa) the binned tables of the full data and of every subsample are
    diagonal, so ``mi == h_x_corrected`` exactly and ``normalized == 1`` for ``"none"``,
    ``"pt"`` and ``"qe"`` (the plug-in H(X) of the paper gives 1.03 at N = 100 for PT). With
    the naive PT count the bound ``mi <= h_x_corrected`` holds for every table
    (:math:`H(X,Y) - H(Y)` plug-in and its correction :math:`(R_{xy} - R_y)/(2 N \\ln 2)` are
    both >= 0). For the other estimators (Bayesian counting, QE's signed weights, a subtracted
    null that can be negative) the ratio can exceed 1 by their sampling error, and it is clipped
    at 1 (the largest value the normalised information can take); the tolerance above 1 is
    therefore 0. Values near 1 never occur in the paper's layers, so the clip does not bias
    their means.

    **Zero entropy.** A unit whose binned feature or activation occupies a single bin (e.g. a
    dead ReLU unit) has exactly 0 information; it is flagged in ``x_constant`` /
    ``y_constant`` and its ``mi``, ``bias``, ``normalized`` and null are 0 (not NaN).

    **Sample size.** The rule of thumb behind the warning: at least 5 samples per possible
    joint cell, :math:`N \\ge 5 B_x^d B_y`. Around it PT's residual bias on independent
    20 x 20 data is a few thousandths (+0.070 at 1 sample per cell, +0.024 at 2.5, +0.004 at
    12.5). The ``"+shuffle"`` corrections remain unbiased on independent data below it, but for
    dependent data they over-correct there (e.g. -0.015 for ``"pt+shuffle"`` and -0.007 for
    ``"qe+shuffle"`` on a rho = 0.6 Gaussian at 1 sample per cell).
    Every unit uses the same N; run groups of units with different image subsets separately.

    References
    ----------
    .. [1] Panzeri S, Treves A (1996). Analytical estimates of limited sampling biases in
       different information measures. Network: Computation in Neural Systems 7:87-107.
    .. [2] Strong SP, Koberle R, de Ruyter van Steveninck RR, Bialek W (1998). Entropy and
       information in neural spike trains. Phys Rev Lett 80:197-200.
    .. [3] Panzeri S, Senatore R, Montemurro MA, Petersen RS (2007). Correcting for the
       sampling bias problem in spike train information measures. J Neurophysiol 98:1064-1072.
    .. [4] Ansuini A, Laio A, Macke JH, Zoccolan D et al. Intrinsic dimension and single-unit
       information in deep networks and rat visual cortex (prune-and-distill seed, sec. 2.2).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=1000)
    >>> y = np.stack([x + rng.normal(size=1000), rng.normal(size=1000)], axis=1)
    >>> res = mutual_information(x, y, bins=10, correction="pt+shuffle")
    >>> bool(res.mi[0] > 0.3 > abs(res.mi[1]))
    True
    """
    bins = check_int(bins, "bins", _FUNC, min_value=2)
    if x_bins is None:
        x_bins = bins
    x_bins = check_int(x_bins, "x_bins", _FUNC, min_value=2)
    check_choice(correction, "correction", _FUNC, CORRECTIONS)
    if correction == "panzeri-treves":
        correction = "pt"
    check_choice(bias_counting, "bias_counting", _FUNC, ("naive", "bayesian"))
    n_shuffles = check_int(n_shuffles, "n_shuffles", _FUNC, min_value=0)
    if correction in _SHUFFLE_CORRECTIONS and n_shuffles < 1:
        raise param_error("n_shuffles", _FUNC, f"an int >= 1 with correction={correction!r}",
                          n_shuffles, "use n_shuffles=20 or a correction without '+shuffle'")
    seed = _resolve_seed(random_state)
    y, y_lo, y_hi = _check_y(y)
    n, u = y.shape
    if n < bins:
        raise param_error("bins", _FUNC, f"an int <= the number of samples ({n})", bins,
                          "use fewer bins or more stimuli")
    if not x_discrete and n < x_bins:
        raise param_error("x_bins", _FUNC, f"an int <= the number of samples ({n})", x_bins,
                          "use fewer bins or more stimuli")
    base = _BASE[correction]
    if base == "qe" and n < _QE_MIN_SAMPLES:
        raise param_error("correction", _FUNC,
                          f"a correction other than {correction!r} with fewer than "
                          f"{_QE_MIN_SAMPLES} samples", correction, "use correction='pt'")
    x_terms, kx = _prepare_x(x, n, u, x_bins, bool(x_discrete), bins)
    if u * kx * bins > _MAX_CELLS:
        raise param_error("x_bins" if not x_discrete else "x", _FUNC,
                          f"small enough for a joint histogram of at most {_MAX_CELLS} cells",
                          f"{u} units x {kx} feature symbols x {bins} activation bins",
                          "use fewer bins or fewer units per call")

    # one bincount over flattened (unit, x symbol, y bin) indices:
    # idx[s, i] = (i * kx + x_symbol[s, i]) * bins + y_code[s, i], built in one blocked pass
    # (two when the activation codes are needed on their own, for the shuffles)
    offset = np.arange(u, dtype=np.intp) * (kx * bins)
    y_term = (_Binner(y, bins, y_lo, y_hi), 1)
    if n_shuffles:
        x_index = _binned_index(x_terms, n, u, offset=offset)
        y_codes = _binned_index([y_term], n, u)
        idx = x_index + y_codes
    else:
        idx = _binned_index([y_term] + x_terms, n, u, offset=offset)

    rng = np.random.default_rng(seed)
    est = _Estimator(n, u, kx, bins, base, bias_counting, rng)
    joint = est.counts(idx)
    mi_plugin, h_x, cx, cy = est.plugin(joint, n, with_h_x=True)
    h_y = np.maximum((math.log(n) - est.xlogx[cy].sum(axis=1) / n) / _LN2, 0.0)
    r_xy = np.count_nonzero(joint.reshape(u, -1), axis=1)
    r_x = np.count_nonzero(cx, axis=1)
    r_y = np.count_nonzero(cy, axis=1)
    x_constant = r_x == 1
    y_constant = r_y == 1
    degenerate = x_constant | y_constant
    h_x[x_constant] = 0.0
    h_y[y_constant] = 0.0
    mi_plugin[degenerate] = 0.0
    if x_discrete:
        est.x_cols = np.flatnonzero(cx.any(axis=0))
        n_symbols = int(est.x_cols.size)
    else:
        n_symbols = int(kx)

    if base == "none":
        mi_base, h_corr = mi_plugin.copy(), h_x.copy()
    elif base == "pt":
        bias_pt, bias_hx = est.pt_bias(joint, cx, cy, with_h_x=True)
        mi_base, h_corr = mi_plugin - bias_pt, h_x + bias_hx
    else:
        mi_base, h_corr = est.qe(idx, mi_plugin, h_x)
    del joint
    # the denominator: > 0 unless X is constant (QE's extrapolation of a tiny sample could in
    # principle undershoot; fall back on the plug-in entropy there)
    h_corr = np.where(h_corr > 0, h_corr, h_x)
    h_corr[x_constant] = 0.0
    safe_h = np.where(x_constant, 1.0, h_corr)

    null = np.full(u, np.nan)
    null_sd = np.full(u, np.nan)
    null_mi = np.full(u, np.nan)
    if n_shuffles:
        s1 = np.zeros(u)
        s2 = np.zeros(u)
        for _ in range(n_shuffles):
            # permute every unit's activation codes independently (in place: the real pairing
            # is already in idx; permuting a permutation is again uniformly random)
            rng.permuted(y_codes, axis=0, out=y_codes)
            np.add(x_index, y_codes, out=idx)
            m = est.base_mi(idx)
            s1 += m
            s2 += m * m
        null_mi = s1 / n_shuffles
        null = null_mi / safe_h
        if n_shuffles > 1:
            var = np.maximum(s2 - n_shuffles * null_mi ** 2, 0.0) / (n_shuffles - 1)
            null_sd = np.sqrt(var) / safe_h
        for a in (null, null_sd, null_mi):
            a[degenerate] = 0.0
        del x_index, y_codes
    del idx

    mi = mi_base - null_mi if correction in _SHUFFLE_CORRECTIONS else mi_base
    mi = np.where(degenerate, 0.0, mi)
    bias = mi_plugin - mi
    normalized = np.where(x_constant, 0.0, np.minimum(mi / safe_h, 1.0))
    n_deg = int(degenerate.sum())
    if n_deg:
        log.debug("mutual_information: %d of %d unit(s) with a constant feature or activation "
                  "(information set to 0)", n_deg, u)

    n_cells = n_symbols * bins
    per_cell = n / n_cells
    ok = per_cell >= MIN_SAMPLES_PER_CELL
    messages = []
    if not ok:
        msg = (f"mutual_information: {n} samples for {n_symbols} feature symbols x {bins} activation "
               f"bins = {n_cells} joint cells ({per_cell:.2g} per cell, fewer than "
               f"{MIN_SAMPLES_PER_CELL:g}): the {correction!r} estimate may keep a sampling "
               "bias of the size of real effects; use fewer bins (e.g. corner_bins() for a 2-D "
               "feature), more stimuli, or compare with result.null")
        messages.append(msg)
        warnings.warn(msg, NetphysWarning, stacklevel=2)
    return InformationResult(
        mi=mi, mi_plugin=mi_plugin, bias=bias, h_x=h_x, h_y=h_y, normalized=normalized,
        x_constant=x_constant, y_constant=y_constant, r_x=r_x, r_y=r_y, r_xy=r_xy,
        n_samples=int(n), correction=correction, bias_counting=bias_counting,
        h_x_corrected=h_corr, null=null, null_sd=null_sd, null_mi=null_mi,
        n_shuffles=n_shuffles, random_state=seed, bins=bins,
        x_bins=n_symbols if x_discrete else x_bins, n_cells=n_cells, samples_per_cell=per_cell,
        sample_size_ok=bool(ok), warnings=tuple(messages))


def layer_information(x, y, *, bins: int = 20, x_bins: int | None = None,
                      x_discrete: bool = False, correction: str = "pt", n_shuffles: int = 20,
                      random_state=0, bias_counting: str = "naive",
                      normalize: bool = True) -> float:
    """Layer value U: the mean over units of the (normalised) single-unit information.

    Parameters
    ----------
    x, y, bins, x_bins, x_discrete, correction, n_shuffles, random_state, bias_counting
        As in :func:`mutual_information`. With ``correction`` ``"pt"``, ``"qe"`` or ``"none"``
        the shuffles only feed the null, which this function does not return: pass
        ``n_shuffles=0`` to skip them.
    normalize : bool, default True
        Average ``normalized`` (the paper's :math:`U^\\ell`); if False average ``mi`` in bits.

    Returns
    -------
    float
        :math:`U = \\frac{1}{n_{units}} \\sum_i I_i / H_i(X)`, using the bias-corrected,
        unclipped per-unit values; units with a constant feature count as 0.

    Raises
    ------
    NetphysError
        As :func:`mutual_information`.

    Notes
    -----
    Equivalent to ``mutual_information(...).normalized.mean()``; call that directly when the
    per-unit values or the null are also needed.

    References
    ----------
    .. [1] Ansuini A, Laio A, Macke JH, Zoccolan D et al. (prune-and-distill seed, sec. 2.2):
       :math:`U^\\ell(X|Y) = E_i[I_i^\\ell(X_i^\\ell; Y_i^\\ell) / H_i^\\ell(X_i^\\ell)]`.
    """
    res = mutual_information(x, y, bins=bins, x_bins=x_bins, x_discrete=x_discrete,
                             correction=correction, n_shuffles=n_shuffles,
                             random_state=random_state, bias_counting=bias_counting)
    return float(np.mean(res.normalized if normalize else res.mi))
