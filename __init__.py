"""nmforge: generator of verified N:M structured-sparse, mixed-precision MAC arrays."""

__version__ = "0.1.0"
