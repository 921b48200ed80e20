"""The layers of the package: the engine stays free of Hydra, MLflow and Optuna and of nnexp's upper
layers; tracking and tuning sit on top of it."""

import pkgutil
import subprocess
import sys

import nnexp.engine

ENGINE = sorted(m.name for m in pkgutil.iter_modules(nnexp.engine.__path__))


def test_engine_imports_no_harness_library_and_no_upper_layer():
    code = (f"import sys; import {', '.join('nnexp.engine.' + m for m in ENGINE)}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf', 'mlflow', 'optuna') "
            "or (m.startswith('nnexp.') and not m.startswith('nnexp.engine') and m != 'nnexp.errors')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert len(ENGINE) >= 10 and out == "[]"


def test_units_stay_small_enough_to_read_top_to_bottom():
    """No module of the package over 300 lines, no class over 150, no function over 60."""
    import ast
    from pathlib import Path

    root = Path(nnexp.engine.__file__).resolve().parent.parent
    too_long = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        name = path.relative_to(root.parent)
        if source.count("\n") > 300:
            too_long.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            limit = 150 if isinstance(node, ast.ClassDef) else 60 if isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
            if limit and node.end_lineno - node.lineno + 1 > limit:
                too_long.append(f"{name}: {node.name} is {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long


def test_sweeps_and_recording_never_import_ablations():
    code = ("import sys, pkgutil, importlib, nnexp.sweeps, nnexp.recording; "
            "[importlib.import_module(f'{p.__name__}.{m.name}') for p in (nnexp.sweeps, nnexp.recording) "
            "for m in pkgutil.iter_modules(p.__path__)]; "
            "print(sorted(m for m in sys.modules if m.startswith('nnexp.ablations')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
