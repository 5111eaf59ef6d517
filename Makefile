# The two commands a newcomer needs are `make run` and `make test`; everything else is here
# so that they stay true on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_MODEL := var/demo-model
# The demo's transcripts: a random-weight SenseVoice-Small of the published size (its speed is real, its words meaningless).
DEMO_SENSEVOICE := var/demo-sensevoice
# The demo's settings (its data directory var/demo, its model, its sample chats): config/demo.yaml.
DEMO := BOT_BRIDGE_CONFIG=config/demo.yaml
# Test-only system packages: Chromium and CJK + emoji fonts for the web console's browser tests, espeak-ng to
# synthesise speech for the audio tests. The service itself needs none (PyAV bundles FFmpeg).
APT_TEST_PACKAGES := chromium fonts-wqy-microhei fonts-noto-color-emoji espeak-ng
# `make demo` speaks its sample voice notes with espeak-ng; without it the demo runs with none.
APT_DEMO_PACKAGES := espeak-ng

.PHONY: run demo demo-predict test bench system-test-deps demo-system-deps clean

run: $(VENV)/.runtime
	$(BIN)/bot-bridge serve

demo: $(VENV)/.runtime $(DEMO_MODEL)/configuration.json $(DEMO_SENSEVOICE)/configuration.json demo-system-deps
	$(DEMO) $(BIN)/python -m demo

# The command line on the demo's model and data: make demo-predict FILES="note.ogg calls/"
demo-predict: $(VENV)/.runtime $(DEMO_MODEL)/configuration.json $(DEMO_SENSEVOICE)/configuration.json
	@test -n "$(FILES)" || { echo 'say which files: make demo-predict FILES="note.ogg calls/"'; exit 2; }
	$(DEMO) $(BIN)/bot-bridge predict $(FILES)

test: $(VENV)/.dev system-test-deps
	$(BIN)/python -m pytest

bench: $(VENV)/.dev system-test-deps
	$(BIN)/python bench/bench_pipeline.py

$(DEMO_MODEL)/configuration.json: | $(VENV)/.runtime
	$(BIN)/bot-bridge model make-random --preset base $(DEMO_MODEL)

$(DEMO_SENSEVOICE)/configuration.json: | $(VENV)/.runtime
	$(BIN)/bot-bridge model make-random --kind sensevoice --preset small $(DEMO_SENSEVOICE)

$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# $(call apt_install,PACKAGES): installs those of PACKAGES that are missing (Debian and Ubuntu).
define apt_install
@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 \
		|| { $$sudo apt-get update >/dev/null && $$sudo apt-get install -y --no-install-recommends $$missing >/dev/null; }; \
	fi
endef

system-test-deps:
	$(call apt_install,$(APT_TEST_PACKAGES))

# Best effort: without espeak-ng (or apt), the demo starts and says it has no sample voice notes.
demo-system-deps:
	-$(call apt_install,$(APT_DEMO_PACKAGES))

# Leaves var/ alone apart from generated models: it holds the database, results and console password.
clean:
	rm -rf $(VENV) test-artifacts $(DEMO_MODEL) $(DEMO_SENSEVOICE) var/bench-models
