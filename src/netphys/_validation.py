"""Validation helpers shared by the public API.

Every user-facing error follows one template::

    the '<param>' parameter of <func> must be <what>, got <value!r>[; <fix>]

Tests pin these messages, so keep the wording stable.
"""
from __future__ import annotations

import numbers
from typing import Any, Iterable

import numpy as np


class NetphysError(ValueError):
    """Base class for errors raised on bad user input."""


class NetphysWarning(UserWarning):
    """Base class for warnings about results that are computed but may be unreliable."""


def param_error(param: str, func: str, expected: str, got: Any, fix: str | None = None) -> NetphysError:
    msg = f"the '{param}' parameter of {func} must be {expected}, got {got!r}"
    if fix:
        msg += f"; {fix}"
    return NetphysError(msg)


def check_int(value: Any, param: str, func: str, *, min_value: int | None = None,
              max_value: int | None = None) -> int:
    """Return ``value`` as an int, raising a templated error if it is not in range."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok:
        value = int(value)
        if min_value is not None and value < min_value:
            ok = False
        if max_value is not None and value > max_value:
            ok = False
    if not ok:
        if min_value is not None and max_value is not None:
            what = f"an int in [{min_value}, {max_value}]"
        elif min_value is not None:
            what = f"an int >= {min_value}"
        elif max_value is not None:
            what = f"an int <= {max_value}"
        else:
            what = "an int"
        raise param_error(param, func, what, value)
    return value


def check_choice(value: Any, param: str, func: str, choices: Iterable[Any]) -> Any:
    choices = list(choices)
    if value not in choices:
        raise param_error(param, func, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def check_finite(array: np.ndarray, param: str, func: str, fix: str | None = None) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
        n_bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise param_error(param, func, "finite (no NaN or inf)",
                          f"{n_bad} non-finite value(s) in an array of shape {a.shape}", fix)
    return a


def check_device(device: Any, func: str, param: str = "device"):
    """``device`` as a ``torch.device`` (None stays None), or a templated error.

    Unknown device strings (``"gpu0"``) and devices that this machine does not have (``"cuda"`` without
    a visible GPU, ``"cuda:3"`` with two GPUs, ``"mps"`` off Apple silicon) are refused here, before
    torch fails with its own message deep inside a forward pass.
    """
    import torch

    if device is None:
        return None
    what = "a torch device such as 'cpu', 'cuda' or 'cuda:0' (or a torch.device)"
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError, TypeError):
            raise param_error(param, func, what, device, "use 'cpu', or 'cuda' on a machine with a GPU") from None
    else:
        raise param_error(param, func, what, device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise param_error(param, func, "a device available on this machine", device,
                              "torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                              "use device='cpu'")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise param_error(param, func, f"a device available on this machine (cuda:0 to cuda:{n - 1})",
                              device, f"this machine has {n} CUDA device(s)")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise param_error(param, func, "a device available on this machine", device,
                              "the MPS backend is not available here; use device='cpu'")
    return dev
