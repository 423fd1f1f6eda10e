# ringfence: `make run` starts the server on embedded defaults; `make test` runs the whole suite.
# Both set everything up first, idempotently, on a fresh Debian machine (as root, or with sudo available).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the project needs; each is installed only when missing.
DEB_PACKAGES := git gcc libc6-dev sqlite3 python3 python3-venv python3-pip ca-certificates postgresql util-linux bubblewrap iproute2 python3-seccomp e2fsprogs curl chromium runsc
# Only for `make bench`: the proxies ringfence is compared with, and haproxy as a reference relay (mitmproxy
# comes from PyPI, in its own venv).
BENCH_PACKAGES := squid tinyproxy haproxy
MITM_VENV := .venv-mitmproxy
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# The agent CLIs the tests run for real, installed once by `ringfence agent install` and kept here between runs.
TEST_AGENTS := .cache/test-agents

.PHONY: run test lint typecheck unit bench bench-deps system node deps agents test-agents clean

run: deps agents
	$(BIN)/ringfence serve

# Claude Code and Codex at the versions ringfence pins, into the server's data directory (a no-op once installed)
agents: deps
	$(BIN)/ringfence agent install claude-code codex

test-agents: deps
	@$(BIN)/ringfence agent install claude-code codex --data-dir $(TEST_AGENTS) >/dev/null

test: deps lint typecheck test-agents unit

lint: deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: deps
	$(BIN)/mypy

unit: deps
	RINGFENCE_TEST_AGENTS=$(CURDIR)/$(TEST_AGENTS) $(BIN)/pytest

bench: deps bench-deps test-agents
	@# figures are written to docs/benchmarks.md
	RINGFENCE_TEST_AGENTS=$(CURDIR)/$(TEST_AGENTS) RINGFENCE_BENCH_MITMDUMP=$(CURDIR)/$(MITM_VENV)/bin/mitmdump $(BIN)/python bench/run.py --out docs/benchmarks.md

bench-deps:
	@$(MAKE) --no-print-directory system DEB_PACKAGES="$(BENCH_PACKAGES)"
	@# squid's and haproxy's packaging start system-wide daemons; the benchmark runs its own instances
	@-$(SUDO) systemctl disable --now squid tinyproxy haproxy >/dev/null 2>&1 || for s in squid tinyproxy haproxy; do $(SUDO) service $$s stop >/dev/null 2>&1; done; true
	@[ -x $(MITM_VENV)/bin/mitmdump ] || ($(PYTHON) -m venv $(MITM_VENV) && $(MITM_VENV)/bin/pip install -q mitmproxy)

system:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# Node.js and npm for the agent CLIs: Debian's nodejs and npm when no npm is on the PATH (a Node.js from elsewhere,
# e.g. NodeSource's package, which carries its own npm and conflicts with Debian's, is used as it is).
node:
	@command -v npm >/dev/null && command -v node >/dev/null || ( echo "installing Debian packages: nodejs npm"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm )

deps: system node $(STAMP)

$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

clean:
	rm -rf $(VENV) $(MITM_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .cache
