"""The NumPy engine: layers, activations, initialisers, losses, optimizers, schedules, the training
loop, datasets and the trained model.

It imports NumPy and nothing else of nnexp but `nnexp.errors` (no Hydra, MLflow or Optuna: a test
says so); everything above it (configs, tracking, sweeps, ablations) is built on top of it.
"""
