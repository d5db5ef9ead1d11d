# Entry points for people and CI. scripts/bootstrap.sh makes .venv and installs mosquitto
# when missing; it is cheap when everything is already in place.

VENV := .venv
# Where `xiaodian demo` keeps its PKI, broker and databases.
DEMO_DATA ?= .xiaodian-demo

.PHONY: bootstrap demo test lint bench clean

bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/bin/xiaodian demo

test: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest

bench: bootstrap
	$(VENV)/bin/python -m bench.run_all

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(DEMO_DATA) .mypy_cache .pytest_cache .ruff_cache
