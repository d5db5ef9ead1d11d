# Entry points for people and CI. scripts/bootstrap.sh makes .venv and installs mosquitto
# when missing; it is cheap when everything is already in place.

VENV := .venv
# Where `xiaodian demo` keeps its PKI, broker and databases.
DEMO_DATA ?= .xiaodian-demo

.PHONY: bootstrap demo test lint bench clean catalog

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

# Extract every marked string and bring the catalogues up to date; then translate the new
# empty msgstr entries in xiaodian/i18n/locales/zh_CN/LC_MESSAGES/messages.po.
catalog:  # needs only the venv: `make catalog VENV=/path/to/.venv` from another checkout
	$(VENV)/bin/pybabel extract -F babel.cfg --no-location --sort-output --omit-header \
		--ignore-dirs='.* _* .venv .fw-stubs tests bench node_modules build dist' \
		-o xiaodian/i18n/messages.pot .
	$(VENV)/bin/pybabel update -i xiaodian/i18n/messages.pot -d xiaodian/i18n/locales \
		-D messages -l zh_CN --no-fuzzy-matching --ignore-obsolete --ignore-pot-creation-date --init-missing

clean:
	rm -rf $(VENV) $(DEMO_DATA) .xiaodian-fleet .mypy_cache .pytest_cache .ruff_cache
