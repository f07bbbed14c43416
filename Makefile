# edgectl: two set-up commands, `make demo` and `make test`. See README.md.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.test-installed
DEB_TOOLS := mosquitto mosquitto-clients mbpoll socat openssl
DAYS ?= 2
OUT ?= reports

.PHONY: venv demo test deb-tools bench scenarios install lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e . --config-settings editable_mode=compat
	touch $@

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgectl check-config config/site.example.toml
	$(BIN)/hil-sim run --site config/site.example.toml --days $(DAYS) --controller none,rbc

# Debian tools the tests drive for real: installed when missing (needs root, as on CI).
deb-tools:
	@missing=""; for t in mosquitto mosquitto_pub mbpoll socat openssl systemd-analyze; do \
	  command -v $$t >/dev/null 2>&1 || [ -x /usr/sbin/$$t ] || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian tools (missing:$$missing)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_TOOLS) systemd >/dev/null; fi

test: $(TEST_STAMP) deb-tools
	$(BIN)/python -m pytest -q tests

# BENCH_ARGS=--quick for short versions; --only drivers,solver for a subset
bench: $(TEST_STAMP) deb-tools
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

scenarios: $(TEST_STAMP) deb-tools
	$(BIN)/hil-sim scenario all --report $(OUT)

install: $(STAMP)
	sudo_or_root() { if [ "$$(id -u)" = 0 ]; then "$$@"; else sudo "$$@"; fi; }; \
	sudo_or_root bash systemd/install.sh

lint: $(TEST_STAMP)
	$(BIN)/python -m pip install -q ruff mypy
	$(BIN)/ruff check edgectl drivers hil_sim tests

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
