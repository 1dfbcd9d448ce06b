"""Public helpers for tests: small synthetic inputs with known layouts and answers, conformance checks."""
from .checks import DetectorCheckError, check_detector, check_experiment
from .generators import check_generator
from .hed_fixture import write_hed_h5

__all__ = ["write_hed_h5", "check_experiment", "check_generator", "check_detector", "DetectorCheckError"]
