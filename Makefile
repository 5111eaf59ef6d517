# The two commands a newcomer needs are `make run` and `make test`; everything else is here
# so that they stay true on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_MODEL := var/demo-model
# Test-only system packages: Chromium and CJK + emoji fonts for the web console's browser tests, espeak-ng to
# synthesise speech for the audio tests. The service itself needs none (PyAV bundles FFmpeg).
APT_TEST_PACKAGES := chromium fonts-wqy-microhei fonts-noto-color-emoji espeak-ng

.PHONY: run demo test bench system-test-deps clean

run: $(VENV)/.runtime
	$(BIN)/bot-bridge serve

demo: $(VENV)/.runtime $(DEMO_MODEL)/configuration.json
	BOT_BRIDGE_MODEL=$(CURDIR)/$(DEMO_MODEL) BOT_BRIDGE_DATA_DIR=$(CURDIR)/var/demo $(BIN)/bot-bridge serve

test: $(VENV)/.dev system-test-deps
	$(BIN)/python -m pytest

bench: $(VENV)/.dev system-test-deps
	$(BIN)/python bench/bench_pipeline.py

$(DEMO_MODEL)/configuration.json: | $(VENV)/.runtime
	$(BIN)/bot-bridge model make-random --preset base $(DEMO_MODEL)

$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

system-test-deps:
	@missing=""; for p in $(APT_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing test system packages:$$missing"; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 \
		|| { $$sudo apt-get update >/dev/null && $$sudo apt-get install -y --no-install-recommends $$missing >/dev/null; }; \
	fi

# Leaves var/ alone apart from generated models: it holds the database, results and console password.
clean:
	rm -rf $(VENV) test-artifacts $(DEMO_MODEL) var/bench-models
