"""The zoo's own exceptions, in a leaf every layer may import."""


class ConfigError(ValueError):
    """A config value or key the zoo rejects before anything loads; the message names the key path."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; raised before the optimizer step so no bad checkpoint is written."""
