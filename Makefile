# ztrace: two commands do all the set-up on a fresh machine.
#   make demo   runs the main job on the bundled sample trace
#   make test   runs the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.ztrace-installed
SYS_STAMP := $(VENV)/.ztrace-system
WARM_STAMP := $(VENV)/.ztrace-warm
DEMO_OUT ?= build/demo
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` and `make vm-test-long` (CI has 2 cores). The units
# that keep a guest boot, a module fixture or the host's zram/BPF tests on one worker are
# tests/conftest.py's (xdist_unit). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

.PHONY: all setup system demo test lint bench vm-image vm-test vm-test-long clean

all: test

# System packages (root only): BCC from Debian (python3-bpfcc, not PyPI's unrelated `bcc`),
# kernel headers for BCC's compiler, qemu/debootstrap for the VM tests, Chromium for the
# dashboard browser test. Without root this step says what it skipped.
$(SYS_STAMP): | $(VENV)/bin/python
	@bash ztrace/setup/system.sh
	@touch $@

system: $(SYS_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(SYS_STAMP)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	@bash ztrace/setup/link_bcc.sh $(VPY)
	@touch $@

# Compile numba's disk cache of the replay once per install/source change, so the first replay
# (make demo, a user's first command) does not stall ~30 s (issue 15). Never fails set-up.
$(WARM_STAMP): $(STAMP) ztrace/cli/warm.py $(shell find ztrace/model ztrace/replay ztrace/format -name '*.py')
	@nice $(VPY) -m ztrace.cli.warm && touch $@ || echo "ztrace: warming the numba cache failed; the first replay will compile" >&2

setup: $(STAMP) $(WARM_STAMP)

demo: $(STAMP) $(WARM_STAMP)
	@bash ztrace/setup/demo.sh $(VPY) $(DEMO_OUT)

test: $(STAMP) $(WARM_STAMP)
	$(VPY) -m pytest $(XDIST) $(PYTEST_ARGS)

# ruff, the type checker over ztrace/ and the import contracts between rooms
# (pyproject.toml [tool.mypy], [tool.importlinter]; docs/architecture.md).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# The VM image (stock Debian 6.1 and 6.12 kernels) is cached in /var/cache/ztrace-vm.
vm-image: $(STAMP)
	bash ztrace/vm/build.sh

vm-test: $(STAMP)
	bash ztrace/vm/build.sh && $(VPY) -m pytest -m vm $(PYTEST_ARGS)

# Guest tests too long for `make test` (vm_long: twelve guest runs of 2-9 min each).
vm-test-long: $(STAMP)
	bash ztrace/vm/build.sh && ZTRACE_VM_LONG=1 $(VPY) -m pytest $(XDIST) -m vm_long $(PYTEST_ARGS)

bench: $(STAMP)
	$(VPY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) build .pytest_cache
