"""netphys: in-silico neurophysiology of deep networks."""
__version__ = "0.1.0"
