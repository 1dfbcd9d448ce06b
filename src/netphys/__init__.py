"""netphys: in-silico neurophysiology of deep networks."""
__version__ = "0.1.0"

from ._validation import NetphysError, NetphysWarning  # noqa: E402 - the public exception types

__all__ = ["NetphysError", "NetphysWarning", "__version__"]
