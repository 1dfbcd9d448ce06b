"""Features per receptive-field box over one image set, shared across layers, networks, realisations."""
from __future__ import annotations

import numpy as np

__all__ = ["BoxFeatureCache"]


class BoxFeatureCache:
    """Memoise :func:`~netphys.features.rf_features` per (image set, box).

    Features depend only on the images and the box, so boxes shared by several layers (or by
    realisations that draw the same images, e.g. all of a 1000-image demo set) are computed once, and
    all the boxes of a request go through ``rf_features`` in one call per feature set (its integral
    images and shared row spectra then serve every layer).
    """

    def __init__(self):
        self.key = None
        self.store: dict = {}

    def prefetch(self, stim_key, gray, requests, device=None) -> None:
        """Compute what is missing for ``requests``: a list of ``(boxes (U, 4), features)``."""
        from . import FEATURE_KEYS, rf_features

        if stim_key != self.key:
            self.key, self.store = stim_key, {}
        by_want: dict = {}
        for boxes, want in requests:
            for b in boxes:
                by_want.setdefault(tuple(want), set()).add(tuple(int(v) for v in b))
        for want, tuples in by_want.items():
            missing = sorted(t for t in tuples if not all(
                k in self.store.get(t, {}) for f in want for k in FEATURE_KEYS[f]))
            if missing:
                new = rf_features(gray, np.array(missing, dtype=np.int64), features=want, device=device)
                for j, t in enumerate(missing):
                    self.store.setdefault(t, {}).update({k: v[:, j] for k, v in new.items()})

    def get(self, boxes, want) -> dict:
        """``{key: (n_stimuli, n_boxes)}`` for the features ``want`` of ``boxes`` (prefetched)."""
        from . import FEATURE_KEYS

        tuples = [tuple(int(v) for v in b) for b in boxes]
        keys = [k for f in want for k in FEATURE_KEYS[f]]
        return {k: np.stack([self.store[t][k] for t in tuples], axis=1) for k in keys}
