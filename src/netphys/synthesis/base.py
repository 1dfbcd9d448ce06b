"""The two plug-in protocols of the synthesis engine: image generators and objectives.

A **generator** (an image space) maps latent codes to images; an **objective** maps images to scores.
The optimisers (:func:`netphys.synthesis.evolve`, :func:`netphys.synthesis.deeptune`) only ever talk to
these two protocols, so a user's GAN or a fitted neural model plugs in beside the built-ins.

Conventions
-----------
* Codes are ``float32`` tensors of shape ``(n, latent_size)`` on the generator's device.
* Images are ``float32`` tensors of shape ``(n, channels, image_size, image_size)`` with values in
  ``[0, 1]`` (raw RGB; the objective applies the model's own normalisation), differentiable with
  respect to the codes.
* Scores are ``float32`` tensors of shape ``(n, n_conditions)``: one column per condition (a unit, a
  model, an ablation condition). Larger is better; minimisation is the optimiser's ``direction``.
"""
from __future__ import annotations

import torch


class Generator(torch.nn.Module):
    """Base class of image spaces: ``codes (n, latent_size) -> images (n, 3, size, size) in [0, 1]``.

    Subclasses set :attr:`latent_size`, :attr:`image_size`, :attr:`sigma0` (the CMA-ES step size that
    suits the space) and :attr:`name`, and implement :meth:`forward` and :meth:`initial_codes`. The
    device follows the module's parameters and buffers (``.to(device)``); a generator without any
    keeps a ``_device`` buffer so that it can follow too.
    """

    latent_size: int
    image_size: int
    channels: int = 3
    sigma0: float = 1.0
    name: str = "generator"

    def __init__(self):
        super().__init__()
        self.register_buffer("_device_anchor", torch.zeros(()), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._device_anchor.device

    def initial_codes(self, n: int, random_state=0) -> torch.Tensor:
        """``n`` starting codes ``(n, latent_size)`` on :attr:`device` (reproducible from ``random_state``)."""
        raise NotImplementedError

    def forward(self, codes: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        """Settings stored with every result (name, sizes, step size and the subclass's own)."""
        return {"name": self.name, "latent_size": int(self.latent_size), "image_size": int(self.image_size),
                "channels": int(self.channels), "sigma0": float(self.sigma0)}
