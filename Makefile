# nnexp: every workflow is a make target. The first target you run creates .venv and installs the
# project into it (pip install -e .[dev]); later runs reuse it. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.installed-stamp
ARGS   ?=
PORT   ?= 5000
WORKERS ?= 1
HOST   ?= 127.0.0.1
STORE  := sqlite:///$(CURDIR)/mlflow.db

.DEFAULT_GOAL := help
STUDY  ?= seed_claims
.PHONY: help setup test lint bench train sweep sweep-worker ablation ablation-check ui clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(READY): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "nnexp needs Python 3.10 or newer (found " + sys.version.split()[0] + ")"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(READY)

setup: $(READY) ## create .venv and install nnexp with its dev tools (done by every target on first use)

test: $(READY) ## run the test suite
	$(BIN)/python -m pytest -q

lint: $(READY) ## ruff check (style, imports, bugbear) and mypy on the engine
	$(BIN)/ruff check .
	$(BIN)/mypy nnexp --ignore-missing-imports

train: $(READY) ## one tracked run of the seed baseline; any Hydra override via ARGS="optimizer.lr=0.05 model=mlp_4_8_6_4_1"
	$(BIN)/python experiments/train.py $(ARGS)

sweep: $(READY) ## the default Optuna sweep against the baseline (WORKERS=2 for two processes; ARGS="sweep=architecture ...")
	$(BIN)/python experiments/sweep.py sweep.workers=$(WORKERS) $(ARGS)

sweep-worker: $(READY) ## join a running sweep from any machine (same ARGS, shared sweep.storage and MLFLOW_TRACKING_URI)
	$(BIN)/python experiments/sweep.py --worker $(ARGS)

ablation: $(READY) ## the seed's claims tested on 10 seeds each (conf/ablation/); report in experiments/<study>/
	$(BIN)/python experiments/ablation.py $(ARGS)

ablation-check: $(READY) ## re-run a recorded study and diff its numbers against its report (STUDY=seed_claims)
	$(BIN)/python experiments/ablation.py --check ablation=$(STUDY) $(ARGS)

ui: $(READY) ## MLflow UI on the project's store, bound to 127.0.0.1 (PORT=5000 by default)
	@echo "MLflow UI: http://$(HOST):$(PORT)  (store: $(STORE); Ctrl-C to stop)"
	$(BIN)/mlflow ui --backend-store-uri $(STORE) --default-artifact-root $(CURDIR)/mlartifacts --host $(HOST) --port $(PORT)

bench: $(READY) ## speed figures: engine vs hand-written loop, scikit-learn, PyTorch; replica scaling
	OPENBLAS_NUM_THREADS=1 $(BIN)/python experiments/bench.py $(ARGS)

clean: ## remove caches (keeps .venv and results)
	rm -rf .pytest_cache .ruff_cache .mypy_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
