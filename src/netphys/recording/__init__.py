"""Recording rig: hooks, unit sampling, stimulus x unit recordings, storage."""
from .hooks import hooks, restored
from .record import layer_shapes, provenance, record, sample_units, unit_table
from .store import load_recording, save_recording

__all__ = ["record", "sample_units", "unit_table", "layer_shapes", "provenance", "hooks", "restored",
           "save_recording", "load_recording"]
