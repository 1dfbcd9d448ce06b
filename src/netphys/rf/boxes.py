"""Receptive-field boxes of the units of a unit table."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["rf_boxes"]


def rf_boxes(model, table: pd.DataFrame, input_size: int, *, method: str = "analytic") -> np.ndarray:
    """(U, 4) receptive-field boxes (row_start, row_stop, col_start, col_stop) of the units in ``table``.

    ``table`` is a unit table (columns ``layer``, ``row``, ``col``) as from
    :func:`netphys.recording.sample_units`; the boxes are clipped to the ``input_size`` image.
    """
    from . import receptive_fields

    boxes = np.empty((len(table), 4), dtype=np.int64)
    for layer, idx in table.groupby("layer", sort=False).indices.items():
        sub = table.iloc[idx]
        boxes[idx] = receptive_fields(model, layer, sub["row"].to_numpy(), sub["col"].to_numpy(), input_size,
                                      method=method)
    return boxes
