# One-line targets; the work lives in the Python commands (see README.md).
PY := .venv/bin/python
# The shipped models come from the registry (train/models.py SHIPPED); MODELS=... overrides.
MODELS ?= $(shell $(PY) -c "from train.models import SHIPPED; print(*SHIPPED)")
SOURCE ?= 0
MODEL_FILE ?= runs/clothes_lite0/deploy/model_int8.tflite

.PHONY: setup lock check benchmark benchmark-quick test test-fast train train-all convert run demo doctor check-arm clean

setup:
	@scripts/setup.sh

benchmark: setup
	$(PY) -m benchmarks $(BENCH_ARGS)

benchmark-quick: setup
	$(PY) -m benchmarks --quick

test: setup
	@scripts/test-services.sh
	$(PY) -m pytest

# Refresh the lock of exact, hash-checked versions make setup installs (x86-64 Linux, CPython 3.11).
lock: setup
	$(PY) -m uv pip compile pyproject.toml --extra train --extra convert --extra dev --generate-hashes \
		--constraint requirements/lock-constraints.txt --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		-o requirements/lock-x86_64.txt

# Lint (pyflakes, pycodestyle, import order, bugbear), formatting, and types of every package; see pyproject.toml.
check: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test-fast: setup
	@scripts/test-services.sh
	$(PY) -m pytest -m "not slow"

train: setup
	$(PY) -m train $(MODELS)

train-all: setup
	$(PY) -m train $(shell $(PY) -c "from train.models import REGISTRY; print(*REGISTRY)")

convert: setup
	$(PY) -m convert $(MODELS)

run: setup
	$(PY) -m edge_runtime --model $(MODEL_FILE) --source $(SOURCE)

demo: setup
	$(PY) -m benchmarks.demo

doctor: setup
	$(PY) -m edge_runtime doctor

check-arm: setup
	$(PY) -m benchmarks.arm

clean:
	rm -rf .venv build *.egg-info .pytest_cache reports/*.tmp
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
