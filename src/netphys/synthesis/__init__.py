"""Stimulus synthesis: objectives, image spaces, CMA-ES evolution and DeepTune gradient ascent.

* :mod:`.objectives` — what to maximise: ``Unit``, ``ChannelMean``, ``Logit``, ``NeuralModel``,
  combined with ``+ - *`` and evaluated under an intervention (``.under``).
* :mod:`.generators`, :mod:`.gans`, :mod:`.prior` — image spaces (``Generator`` protocol): pixel,
  Fourier, grayscale, a user's DeePSiM fc6 / BigGAN-deep weights, the gan-face-generate DCGAN, the
  shipped 64-px prior.
* :func:`evolve` — CMA-ES (vectorised sep/Cholesky in torch, pycma as reference) over a space's codes.
* :func:`deeptune` — regularised gradient ascent on pixels, with consensus across models;
  :func:`stability`.
"""
from .base import Generator
from .deeptune import deeptune, default_lambdas, lambda_sweep, stability
from .evolve import OPTIMIZERS, evolve, evolve_loop, score_images
from .generators import SPACES, FourierSpace, GrayscaleSpace, PixelSpace, make_space
from .objectives import ChannelMean, LayerReadout, Logit, NeuralModel, Objective, SignAblated, Unit, model_input
from .regularizers import gaussian_blur, jitter, lp_norm, total_variation

__all__ = ["Generator", "Objective", "Unit", "ChannelMean", "Logit", "NeuralModel", "LayerReadout", "SignAblated",
           "model_input",
           "PixelSpace", "FourierSpace", "GrayscaleSpace", "make_space", "SPACES",
           "evolve", "evolve_loop", "score_images", "OPTIMIZERS",
           "deeptune", "default_lambdas", "lambda_sweep", "stability",
           "lp_norm", "total_variation", "jitter", "gaussian_blur"]
