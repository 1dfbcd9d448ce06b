"""Experiments: typed configs (paper defaults), runners that cache and record provenance."""
