# Two commands for a newcomer: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
DEV_MAIL_PORT ?= 8025
export FLASK_APP := preference_center

.PHONY: run test install translations migrate lint bench ci clean

# The virtualenv is rebuilt when the dependency list changes.
$(BIN)/.installed: setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed: $(PYTHON) not found"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,test,postgresql,redis]"
	touch $@

install: $(BIN)/.installed

translations: install
	$(BIN)/python -m preference_center.translations compile

# `make run`: install, migrate, compile translations, seed example topics, then start the web
# app, the outbox worker and the development mailbox; Ctrl-C stops all three.
run: translations
	FLASK_DEBUG=1 $(BIN)/flask db upgrade
	FLASK_DEBUG=1 $(BIN)/flask topics seed
	FLASK_DEBUG=1 $(BIN)/flask consent-texts seed
	@echo ""
	@echo "  preference-center is starting: open http://127.0.0.1:$(PORT)/"
	@echo "  emails it sends: http://127.0.0.1:$(PORT)/dev/mailbox"
	@echo ""
	@export FLASK_DEBUG=1 FLASK_SERVER_NAME=$${FLASK_SERVER_NAME:-127.0.0.1:$(PORT)} \
	        FLASK_PREFERRED_URL_SCHEME=$${FLASK_PREFERRED_URL_SCHEME:-http} \
	        FLASK_DEV_MAILBOX_PORT=$(DEV_MAIL_PORT); \
	trap 'trap - INT TERM EXIT; kill 0' INT TERM EXIT; \
	$(BIN)/flask devmail serve & \
	$(BIN)/flask outbox work --poll-interval 1 & \
	$(BIN)/flask run --port $(PORT)

test: translations
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

migrate: install
	$(BIN)/flask db upgrade

bench: translations
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) instance .pytest_cache test-output
	find translations -name '*.mo' -delete
