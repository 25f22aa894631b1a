# Two commands set everything up on a fresh machine:  `make demo`  and  `make test`.
# Everything installs into the project's own virtualenv (.venv), never the system Python.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: setup demo test bench-backtest
setup: $(VENV)/.installed

# Reinstalled when the package description or the C sources change (the extensions are built by pip).
$(VENV)/.installed: pyproject.toml setup.py src/mantra/_spine.c src/mantra/_fixed.c
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@$(VPY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

demo: setup
	@$(VPY) -m mantra.cli demo

test: setup
	@$(VPY) -m pytest

# The backtest benchmark with NautilusTrader measured side by side on the same stream (its own
# virtualenv: ~650 MB the engine itself does not need).
bench-backtest: setup
	@test -x .venv-nautilus/bin/python || ($(PY) -m venv .venv-nautilus && .venv-nautilus/bin/pip install -q nautilus-trader==1.221.0)
	@MANTRA_NAUTILUS_PYTHON=.venv-nautilus/bin/python $(VPY) -m mantra.cli bench backtest --json
