"""prefzoo: a preference-optimization algorithm zoo on TRL, driven by one Hydra config tree."""

__version__ = "0.1.0"
