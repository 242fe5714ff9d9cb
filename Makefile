# The two commands a newcomer needs (README.md); each sets up .venv first (idempotent, ~1 s when done).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup quickstart test test-slow
setup:
	@bash scripts/setup_env.sh

quickstart: setup
	$(PY) train.py experiment=quickstart
	@echo "--- the shipped model (models/tsm-diff-5m-select: experiment=smallest, then smallest_stage2, 3, 4, 5, smallest_select) on Diff-TSM's example:"
	$(PY) -m tsm.predict "e^(2x) sin(14x)" checkpoint=tsm-diff-5m-select
	@grep -m1 "^\*\*Headline" models/tsm-diff-5m-select/README.md

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m "slow and not gpu"
