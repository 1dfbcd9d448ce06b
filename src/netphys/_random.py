"""One place where randomness is resolved (the library never seeds globally)."""
from __future__ import annotations

import numbers

import numpy as np

from ._validation import param_error


def check_random_state(random_state, func: str = "netphys") -> np.random.Generator:
    """Turn ``None``, an int, a SeedSequence or a Generator into a ``numpy.random.Generator``."""
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool) and random_state >= 0:
        return np.random.default_rng(int(random_state))
    raise param_error("random_state", func, "None, a non-negative int, a SeedSequence or a numpy Generator",
                      random_state)


def spawn_seeds(random_state, n: int) -> list[int]:
    """Spawn ``n`` independent integer seeds from ``random_state`` (reproducible)."""
    if isinstance(random_state, np.random.SeedSequence):
        ss = random_state
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        ss = np.random.SeedSequence(int(random_state))
    else:
        rng = check_random_state(random_state)
        ss = np.random.SeedSequence(int(rng.integers(2**63)))
    return [int(c.generate_state(1, dtype=np.uint64)[0] % (2**31 - 1)) for c in ss.spawn(n)]


def torch_generator(random_state, func: str = "netphys"):
    """A seeded ``torch.Generator`` (CPU) derived from ``random_state``."""
    import torch

    rng = check_random_state(random_state, func)
    g = torch.Generator()
    g.manual_seed(int(rng.integers(2**62)))
    return g
