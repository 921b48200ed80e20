"""nnexp: NumPy neural-network experiments."""

__version__ = "0.1.0"
