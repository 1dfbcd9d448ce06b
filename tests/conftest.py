"""Shared fixtures: tiny image folders with awkward files, small models, the optional shared data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

#: pixel values the fixture images are filled with (used for known-answer checks)
RED = (200, 30, 30)
GREEN = (30, 200, 30)


def _solid(mode, size, color):
    from PIL import Image

    return Image.new(mode, size, color)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """An ImageFolder layout with every awkward case the readers must survive.

    ``root/``
      ``a_cats/``   3 RGB JPEGs (40x48, red), 1 grayscale PNG (value 77)
      ``b_dogs/``   2 RGB PNGs (green), 1 CMYK JPEG (pure cyan), 1 RGBA PNG (fully transparent),
                    1 corrupt ``bad.jpg`` (not an image), 1 ``notes.txt`` (ignored)
      ``c_empty/``  no images (ignored with a warning)
    """
    root = tmp_path / "imgs"
    cats, dogs, empty = root / "a_cats", root / "b_dogs", root / "c_empty"
    for d in (cats, dogs, empty):
        d.mkdir(parents=True)
    for i in range(3):
        _solid("RGB", (48, 40), RED).save(cats / f"cat{i}.jpg", quality=95)
    _solid("L", (40, 40), 77).save(cats / "gray.png")
    for i in range(2):
        _solid("RGB", (40, 40), GREEN).save(dogs / f"dog{i}.png")
    _solid("CMYK", (40, 40), (255, 0, 0, 0)).save(dogs / "cmyk.jpg", quality=95)
    _solid("RGBA", (40, 40), (0, 0, 0, 0)).save(dogs / "rgba.png")
    (dogs / "bad.jpg").write_bytes(b"this is not a JPEG file")
    (dogs / "notes.txt").write_text("not an image")
    (empty / "readme.txt").write_text("no images here")
    return root


@pytest.fixture
def flat_folder(tmp_path) -> Path:
    """A folder of images without class sub-folders (read as one unlabelled class)."""
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(4):
        _solid("RGB", (32, 32), (10 * i, 0, 0)).save(root / f"im{i}.png")
    return root


@pytest.fixture
def random_images():
    """A function ``(n, size, seed) -> uint8 array (n, size, size, 3)``."""

    def make(n=6, size=32, seed=0):
        return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)

    return make


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` next to the repository (skips when absent, as on a user's clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def vgg11_random():
    """torchvision VGG-11 (no batch norm, in-place ReLUs) with seeded random weights (built once)."""
    from netphys.models import load_model

    return load_model("vgg11", "random", random_state=0)


@pytest.fixture
def small_vgg():
    """The netphys default architecture with random weights (cheap: quarter width, 64 px)."""
    from netphys.models import load_model

    return load_model("netphys_vgg16", "random", random_state=0)


def no_hooks_left(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.fixture(scope="module")
def one_thread():
    """One PyTorch thread for a module of small networks (much faster on a busy CI machine); restored."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
