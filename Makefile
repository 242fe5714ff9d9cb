# The two commands a newcomer needs (README.md); each sets up .venv first (idempotent, ~1 s when done).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup quickstart test test-slow
setup:
	@bash scripts/setup_env.sh

quickstart: setup
	$(PY) train.py experiment=quickstart

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m "slow and not gpu"
