"""Public helpers for tests: small synthetic inputs with known layouts and answers."""
from .hed_fixture import write_hed_h5

__all__ = ["write_hed_h5"]
