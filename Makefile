# Two commands set everything up on a fresh machine:  `make demo`  and  `make test`.
# Everything installs into the project's own virtualenv (.venv), never the system Python.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
UI := src/mantra/ui
UI_VENDOR := $(UI)/web/vendor/uPlot.esm.js

.PHONY: setup demo test bench-backtest chromium
setup: $(VENV)/.installed

# Reinstalled when the package description or the C sources change (the extensions are built by pip).
$(VENV)/.installed: pyproject.toml setup.py src/mantra/_spine.c src/mantra/_ports.c src/mantra/_feedbook.c src/mantra/_lane.c src/mantra/_decimal.h src/mantra/_fixed.c src/mantra/_risk.c $(UI_VENDOR)
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@$(VPY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# The UI's chart library, pinned by its lock file, from the npm registry into a git-ignored folder
# the UI serves (a wheel carries it: setup.py copies it too).
$(UI_VENDOR): $(UI)/package.json $(UI)/package-lock.json
	@cd $(UI) && npm ci --no-audit --no-fund --silent
	@mkdir -p $(UI)/web/vendor && cp $(UI)/node_modules/uplot/dist/uPlot.esm.js $(UI)/node_modules/uplot/dist/uPlot.min.css $(UI)/web/vendor/

# The browser tests drive Debian's chromium (never a downloaded browser).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

demo: setup
	@$(VPY) -m mantra.cli demo

test: setup chromium
	@$(VPY) -m pytest

# The backtest benchmark with NautilusTrader measured side by side on the same stream (its own
# virtualenv: ~650 MB the engine itself does not need).
bench-backtest: setup
	@test -x .venv-nautilus/bin/python || ($(PY) -m venv .venv-nautilus && .venv-nautilus/bin/pip install -q nautilus-trader==1.221.0)
	@MANTRA_NAUTILUS_PYTHON=.venv-nautilus/bin/python $(VPY) -m mantra.cli bench backtest --json
