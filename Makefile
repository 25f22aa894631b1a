# Two commands set everything up on a fresh machine:  `make demo`  and  `make test`.
PY ?= python3

.PHONY: setup demo test
setup:
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'

demo: setup
	@$(PY) -m mantra.cli demo

test: setup
	@$(PY) -m pytest
