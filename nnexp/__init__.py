"""nnexp: NumPy neural-network experiments."""
