# The two commands of the README: `make run` (the main job) and `make test`.
# Each installs what it needs first (scripts/setup.sh is idempotent).
VENV ?= .venv

.PHONY: setup run test bench
setup:
	@bash scripts/setup.sh

run: setup
	$(VENV)/bin/mas-credit study experiments/study_quickstart.yaml
	$(VENV)/bin/mas-credit train experiments/quickstart.yaml

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest -n auto --maxprocesses 8

bench: setup
	$(VENV)/bin/python benchmarks/team_value.py
	$(VENV)/bin/python benchmarks/estimators.py
	$(VENV)/bin/python benchmarks/rollout.py
	$(VENV)/bin/python benchmarks/train.py
	$(VENV)/bin/python benchmarks/batch.py
	$(VENV)/bin/python benchmarks/scale.py --cost
