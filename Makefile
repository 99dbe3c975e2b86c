# credit-gateway: `make up` runs the gateway on embedded defaults, `make test` runs every test.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export LITELLM_LOCAL_MODEL_COST_MAP := True
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: install up test services chromium bench clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed

up: install
	$(VENV)/bin/gateway up

services:
	@bash scripts/services.sh

# the browser tests drive Debian's chromium (Playwright never downloads one here)
chromium:
	@test -x /usr/bin/chromium || { echo "installing chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: install node_modules/.installed chromium services
	$(PY) -m pytest -q

bench: install services
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache .hypothesis
