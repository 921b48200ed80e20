"""`make predict` / `make serve`: a logged model, checked against the run that logged it first.

    python experiments/serve.py verify  runs:/<run id>/model
    python experiments/serve.py predict runs:/<run id>/model features.csv   # predictions as CSV on stdout
    python experiments/serve.py serve   runs:/<run id>/model --port 5002    # mlflow models serve, 127.0.0.1

The model's data files must match the SHA-256 digests recorded on its run and its MLmodel must name
nnexp's loader and nothing to run (nnexp/serving.py); a model that does not is refused, exit code 2.
`serve` downloads and checks the model once, then serves that checked copy with `mlflow models serve
--env-manager local` (the project's environment, with its bin/ on PATH so MLflow finds uvicorn).
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from nnexp.cli import EXIT_INTERRUPTED, fail


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("verify", "predict", "serve"):
        s = sub.add_parser(name)
        s.add_argument("model", help="runs:/<run id>/model or models:/<model id>")
        if name == "predict":
            s.add_argument("input", help="a CSV file with a header row naming the features (any order)")
        if name == "serve":
            s.add_argument("--host", default="127.0.0.1")
            s.add_argument("--port", type=int, default=5002)
    a = p.parse_args(argv)
    try:
        return {"verify": verify, "predict": predict, "serve": serve}[a.command](a)
    except ValueError as e:
        fail(str(e))
    return 2


def verify(a: argparse.Namespace) -> int:
    from nnexp import serving

    with tempfile.TemporaryDirectory() as tmp:
        serving.fetch(a.model, tmp)
    print(f"{a.model}: its files match the digests recorded on its run and its MLmodel names {serving.LOADER}")
    return 0


def predict(a: argparse.Namespace) -> int:
    import pandas as pd

    from nnexp import serving

    if not Path(a.input).is_file():
        fail(f"{a.input}: no such file (give a CSV file with a header row naming the features)")
    model = serving.load(a.model)
    table = pd.read_csv(a.input)
    sys.stdout.write(model.predict(table).to_csv(index=False))
    return 0


def serve(a: argparse.Namespace) -> int:
    from nnexp import serving

    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM: stop the server, remove the copy
    with tempfile.TemporaryDirectory(prefix="nnexp-serve-") as tmp:
        local = serving.fetch(a.model, tmp)
        print(f"serving {a.model} (checked copy in {local}) on http://{a.host}:{a.port}/invocations", flush=True)
        cmd = [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", str(local), "--env-manager", "local",
               "--host", a.host, "--port", str(a.port)]
        proc = subprocess.Popen(cmd, env=env)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=30)
            return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
