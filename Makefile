# Two commands on a fresh machine:  `make run` (main job)  and  `make test` (test suite).
# Both set up .venv first (uv, pinned dependencies) and are quick the second time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export MLFLOW_DISABLE_TELEMETRY ?= true

.PHONY: setup run smoke dev serve test lint home clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q "uv==$(UV_VERSION)"
	$(PYTHON) -m uv venv --seed --allow-existing -q -p $(PYTHON) $(VENV)
	@# Bytecode compiled once here: each process (a run, its step worker, the sensor's run) then
	@# imports Dagster, MLflow and W&B in about half the time.
	$(PYTHON) -m uv pip install -q --compile-bytecode -p $(BIN)/python -e ".[deploy,test]"
	@# `source .venv/bin/activate` then also points the dagster CLI at this code location and
	@# the project's instance, so `dagster asset materialize --select tuned_params+` works as typed.
	@grep -q DAGSTER_MODULE_NAME $(BIN)/activate || cat deploy/activate-dagster.sh >> $(BIN)/activate
	@mkdir -p "$(CURDIR)/.dagster_home"
	@cp -n dagster.yaml "$(CURDIR)/.dagster_home/dagster.yaml" 2>/dev/null || true
	@touch $@

home:
	@mkdir -p "$(DAGSTER_HOME)"
	@cp -n dagster.yaml "$(DAGSTER_HOME)/dagster.yaml" 2>/dev/null || true

## Materialize all seven assets with the default configuration.
run: setup home
	$(BIN)/dagster job execute -m housing_assets.definitions -j housing_pipeline_job

## The same with the quick configuration (configs/smoke.yaml).
smoke: setup home
	$(BIN)/dagster job execute -m housing_assets.definitions -j housing_smoke_job

## The Dagster UI and daemon (sensors) on http://127.0.0.1:3000, behind a password: user
## `operator`, password HOUSING_UI_PASSWORD or else one made once in $(DAGSTER_HOME)/ui-password
DEV_PORT ?= 3000
UI_PASSWORD_FILE := $(DAGSTER_HOME)/ui-password
dev: setup home
	@[ -n "$$HOUSING_UI_PASSWORD" ] || [ -s "$(UI_PASSWORD_FILE)" ] || (umask 077; \
	  $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(18))" > "$(UI_PASSWORD_FILE)")
	@[ -n "$$HOUSING_UI_PASSWORD" ] || echo "Dagster UI: http://127.0.0.1:$(DEV_PORT)" \
	  "user operator, password $$(cat "$(UI_PASSWORD_FILE)") (from $(UI_PASSWORD_FILE))"
	$(BIN)/dagster-daemon run -w workspace.yaml & daemon=$$!; trap 'kill $$daemon' EXIT; \
	HOUSING_UI_PASSWORD_FILE="$(UI_PASSWORD_FILE)" \
	  $(BIN)/housing-webserver -h 127.0.0.1 -p $(DEV_PORT) -w workspace.yaml

## The champion over HTTP on http://127.0.0.1:5001/invocations (after `make run`)
serve: setup
	$(BIN)/housing-serve --port 5001

## The test suite (unit tests, then end-to-end tests on the real data).
test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check housing_assets housing_assets_testkit housing_assets_tests benchmarks

clean:
	rm -rf $(VENV) .dagster_home data wandb
