# nas_cli developer commands. `make demo` and `make test` are the README's two set-up commands.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# torch/torchvision pins that install from the local wheel cache on the dev machines; a user's
# machine gets them from PyPI. Override TORCH_SPEC to pick another build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
# pytest-xdist processes for the suite: CI's machine has 2 cores, and the suite is CPU-bound (about
# 7 min with two workers on a 2-core machine, each taking its share of the cores: tests/conftest.py);
# 0 runs it in-process
TEST_WORKERS ?= 2
# e.g. make bench BENCH_ARGS="--compare --json bench.json runtime.precision=bf16"
BENCH_ARGS ?=

.PHONY: install demo test test-all bench clean help

help:
	@echo "make install  - pip install -e .[dev] (plus torch/torchvision)"
	@echo "make demo     - install, then the whole search -> eval -> retrain pipeline on embedded synthetic data + report"
	@echo "make test     - install, then the default test suite (CPU, < 10 min)"
	@echo "make test-all - also the slow tests"
	@echo "make bench    - nas-bench: step time, images/s, peak memory of the search/eval steps on this device"

install:
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e ".[dev]"

demo: install
	nas-search experiment=demo stage=pipeline method=gaea_pcdarts hydra.run.dir=outputs/demo-pipeline
	nas-report outputs/demo-pipeline

test: install
	$(PYTHON) -m pytest -q -m "not slow" -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-all: install
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

bench: install
	nas-bench $(BENCH_ARGS)

clean:
	rm -rf outputs multirun .pytest_cache build dist *.egg-info
