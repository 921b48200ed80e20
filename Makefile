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
STORE  ?= sqlite:///$(CURDIR)/mlflow.db
ARTIFACTS ?= $(CURDIR)/mlartifacts
SERVER_DIR ?= $(CURDIR)/server
SERVER_PORT ?= 5001
SERVE_PORT ?= 5002
MODEL  ?=
INPUT  ?=
# mlflow ui/server: no background job runner (nnexp runs no MLflow jobs), no telemetry from offline machines
MLFLOW_ENV := MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true

.DEFAULT_GOAL := help
# a make variable as one shell word, whatever it holds (SWEEP="x'; rm -rf /" stays a name)
quote = '$(subst ','\'',$(1))'

STUDY  ?= seed_claims
SWEEP  ?= default
JOURNAL ?= $(CURDIR)/optuna-journal.log
DASH_PORT ?= 8080
.PHONY: help setup test test-fast lint bench train train-best dashboard sweep sweep-worker ablation ablation-record ablation-check ui server predict serve need-model clean

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
	$(BIN)/python -m pytest -q -n 2 --durations=15

FAST_TESTS := $(addprefix tests/test_,gradients.py optim.py schedules.py train.py population.py model.py data.py stats.py configs.py boundaries.py plots.py)
test-fast: $(READY) ## the engine, data, statistics and config tests only (under a minute; no MLflow, sweeps or servers)
	$(BIN)/python -m pytest -q -n 2 $(FAST_TESTS)

lint: $(READY) ## ruff check (style, imports, bugbear) and mypy on the engine
	$(BIN)/ruff check .
	$(BIN)/mypy nnexp --ignore-missing-imports

train: $(READY) ## one tracked run of the seed baseline; any Hydra override via ARGS="optimizer.lr=0.05 model=mlp_8_6_4"
	$(BIN)/python experiments/train.py $(ARGS)

train-best: $(READY) ## train a sweep's best trial again, recorded with its model (SWEEP=default; ARGS="sweep.storage=..." for another storage)
	$(BIN)/python experiments/train.py --best=$(call quote,$(SWEEP)) $(ARGS)

sweep: $(READY) ## the default Optuna sweep against the baseline (WORKERS=2 for two processes; ARGS="sweep=architecture ...")
	$(BIN)/python experiments/sweep.py sweep.workers=$(WORKERS) $(ARGS)

sweep-worker: $(READY) ## join a running sweep from any machine (same ARGS, shared sweep.storage and MLFLOW_TRACKING_URI)
	$(BIN)/python experiments/sweep.py --worker $(ARGS)

ablation: $(READY) ## an ablation study (STUDY=seed_claims; conf/ablation/): MLflow runs, report in outputs/ablation/<study>/
	$(BIN)/python experiments/ablation.py ablation=$(call quote,$(STUDY)) $(ARGS)

ablation-record: $(READY) ## the same, its report recorded into experiments/<study>/ (a clean working tree; commit it)
	$(BIN)/python experiments/ablation.py --record ablation=$(call quote,$(STUDY)) $(ARGS)

ablation-check: $(READY) ## re-run a recorded study and compare every number with its report (STUDY=seed_claims)
	$(BIN)/python experiments/ablation.py --check ablation=$(call quote,$(STUDY)) $(ARGS)

ui: $(READY) ## MLflow UI on the project's store, bound to 127.0.0.1 (PORT=5000 by default)
	@echo "MLflow UI: http://$(HOST):$(PORT)  (store: $(STORE); Ctrl-C to stop)"
	$(MLFLOW_ENV) $(BIN)/mlflow ui --backend-store-uri $(STORE) --artifacts-destination file://$(ARTIFACTS) \
	  --host $(HOST) --port $(PORT) --workers 1

dashboard: $(READY) ## optuna-dashboard on the sweeps' journal file (JOURNAL=optuna-journal.log), 127.0.0.1:DASH_PORT=8080; installed on first use
	@test -f "$(JOURNAL)" || { echo "no Optuna journal at $(JOURNAL) yet: run make sweep first (or JOURNAL=<path>)" >&2; exit 2; }
	@$(BIN)/python -c "import optuna_dashboard" 2>/dev/null || $(BIN)/python -m pip install --quiet 'optuna-dashboard>=0.17'
	@echo "optuna-dashboard: http://$(HOST):$(DASH_PORT)  (storage: $(JOURNAL); Ctrl-C to stop)"
	$(BIN)/optuna-dashboard --storage-class JournalFileStorage --host $(HOST) --port $(DASH_PORT) "$(JOURNAL)"

server: $(READY) ## a local MLflow tracking server (127.0.0.1, SERVER_PORT=5001) with its own store in server/, for shared sweeps
	@mkdir -p $(SERVER_DIR)
	@$(BIN)/python -c "import sqlite3; sqlite3.connect('$(SERVER_DIR)/mlflow.db').execute('PRAGMA journal_mode=WAL')"
	@echo "MLflow tracking server: http://$(HOST):$(SERVER_PORT)  (export MLFLOW_TRACKING_URI=http://$(HOST):$(SERVER_PORT); Ctrl-C to stop)"
	$(MLFLOW_ENV) $(BIN)/mlflow server --backend-store-uri sqlite:///$(SERVER_DIR)/mlflow.db \
	  --artifacts-destination file://$(SERVER_DIR)/artifacts --host $(HOST) --port $(SERVER_PORT) --workers 2

# a logged model, checked against the run that logged it (nnexp/serving.py), from the project's store or MLFLOW_TRACKING_URI
MODEL_ENV = PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-$(STORE)}" $(MLFLOW_ENV)
need-model:
	@test -n $(call quote,$(MODEL)) || { echo "usage: make $(MAKECMDGOALS) MODEL=runs:/<run id>/model (the run id that make train prints)" >&2; exit 2; }

predict: $(READY) need-model ## predictions of a logged model for a CSV file: MODEL=runs:/<run id>/model INPUT=features.csv
	@test -n $(call quote,$(INPUT)) || { echo "usage: make predict MODEL=runs:/<run id>/model INPUT=features.csv" >&2; exit 2; }
	@$(MODEL_ENV) $(BIN)/python experiments/serve.py predict $(call quote,$(MODEL)) $(call quote,$(INPUT))

serve: $(READY) need-model ## serve a logged model over HTTP on 127.0.0.1 (MODEL=runs:/<run id>/model, SERVE_PORT=5002)
	$(MODEL_ENV) $(BIN)/python experiments/serve.py serve $(call quote,$(MODEL)) --host $(HOST) --port $(SERVE_PORT)

bench: $(READY) ## speed figures: engine vs references, sweeps by population size and workers, pruning, ablation packing
	OPENBLAS_NUM_THREADS=1 $(BIN)/python experiments/bench.py $(ARGS)

clean: ## remove caches (keeps .venv and results)
	rm -rf .pytest_cache .ruff_cache .mypy_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
