"""Ablation studies (`make ablation`): a baseline and variants trained on the same seeds, compared
seed by seed with paired statistics.

study (parse, prepare and train a study; analyse and compare its numbers), report (the report files
and the MLflow runs). It may import the engine and the shared harness modules, never nnexp.sweeps.
"""
