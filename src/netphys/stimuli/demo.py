"""The demo stimulus set shipped inside the package (works with no ../shared data)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from .preprocess import Preprocess
from .stimulus_set import StimulusSet

DEMO_ARCHIVE = "imagenette64_val_demo.zip"


def demo_stimuli_path() -> Path:
    return Path(str(resources.files("netphys") / "data" / "demo" / DEMO_ARCHIVE))


def demo_stimuli(preprocess: Preprocess | None = None) -> StimulusSet:
    """1000 Imagenette validation images at 64 px (100 per class), shipped with netphys.

    See ``netphys/data/demo/ATTRIBUTION.txt``: Imagenette (fast.ai), a subset of ImageNet
    (Deng et al. 2009), ImageNet terms (non-commercial research and education).
    """
    st = StimulusSet.from_zip(demo_stimuli_path(), preprocess=preprocess or Preprocess(resize=64, crop=64),
                              name="imagenette64-val-demo")
    st.attrs["attribution"] = "Imagenette (fast.ai) / ImageNet (Deng et al. 2009); ImageNet terms"
    return st


def folder_or_demo(images, preprocess: Preprocess, *, on_error: str = "raise") -> StimulusSet:
    """An image folder (ImageFolder layout) if ``images`` is a path, else the shipped demo set.

    ``on_error`` ("raise", "skip", "grey") is the policy for undecodable files of the folder.
    """
    if images is None:
        return demo_stimuli(preprocess)
    return StimulusSet.from_folder(images, preprocess=preprocess, on_error=on_error)
