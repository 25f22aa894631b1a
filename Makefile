# Two commands set everything up on a fresh machine:  `make demo`  and  `make test`.
PY ?= python3

.PHONY: setup demo test bench-backtest
setup:
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'

demo: setup
	@$(PY) -m mantra.cli demo

test: setup
	@$(PY) -m pytest

# The backtest benchmark with NautilusTrader measured side by side on the same stream (its own
# virtualenv: ~650 MB the engine itself does not need).
bench-backtest: setup
	@test -x .venv-nautilus/bin/python || ($(PY) -m venv .venv-nautilus && .venv-nautilus/bin/pip install -q nautilus-trader==1.221.0)
	@MANTRA_NAUTILUS_PYTHON=.venv-nautilus/bin/python $(PY) -m mantra.cli bench backtest --json
