"""Ablation studies (`make ablation`): a baseline and variants trained on the same seeds, compared
seed by seed with paired statistics; with `tuning`, on several tasks under two protocols (every
variant at the baseline's settings, and at its own best settings after the same tuning budget).

study (parse and compose a study, train it), analysis (judge each variant, compare a re-run with a
report), report (the report files), files (where reports go, written whole), run (the commands:
record in MLflow, write, check); tuning (each variant's search space and its Optuna study, trained
as populations), protocols (the untuned and tuned arms, evaluated packed; claims per task and across
tasks), tuned_run and tuned_report (the tuned study's run and report). It may import the engine, the
shared harness modules and nnexp.sweeps (search spaces and Optuna storages), never the reverse.
"""
