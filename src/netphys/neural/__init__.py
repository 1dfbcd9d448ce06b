"""Neural recordings: a small data model and loaders, so that the statistics run on real data too.

A :class:`NeuralDataset` holds, per area, an ``xarray.DataArray`` of responses with dims
``(stimulus, unit)`` or ``(stimulus, unit, repeat)``, the stimulus images and per-stimulus
coordinates, and provenance (source, citation, licence) in ``attrs``.

* :func:`from_arrays`, :func:`from_files` -- a user's own data (e.g. rat V1/LM/LI/LL, Fig. 2);
* :func:`load_cowley_v4`, :func:`load_ecker_v1`, :func:`load_allen_v1` -- the real data sets of the
  optional shared data folder (:func:`default_shared_root`).
"""
from ._core import NeuralDataset, default_shared_root, from_arrays, from_files
from .datasets import load_allen_v1, load_cowley_v4, load_ecker_v1

__all__ = [
    "NeuralDataset",
    "from_arrays",
    "from_files",
    "default_shared_root",
    "load_cowley_v4",
    "load_ecker_v1",
    "load_allen_v1",
]
from .v1 import load_v1_gosi, v1_gosi  # noqa: E402,F401  (gOSI of the Ecker V1 units; netphys.neural.v1)
