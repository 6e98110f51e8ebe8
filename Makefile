# The two commands of the README:
#   make book   build the book into _build/html (executes every changed notebook; offline is fine)
#   make test   run every test (lmlab, notebook hygiene, one full book build offline, Chromium)
# Both create .venv first if it is missing (python3 -m venv; requirements.txt; lmlab editable).

SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
BUILD  := _build
# Any change to lmlab or the pinned environment re-executes every notebook on the next `make book`.
# The shipped zoo weights, their records and the shipped texts count as sources too.
LMLAB_SOURCES := $(shell find lib/lmlab -name '*.py' -o -name '*.safetensors' -o -name '*.json' -o -name '*.xz' 2>/dev/null)

.PHONY: book slides pdf test venv clean help
.DEFAULT_GOAL := help

help:
	@echo "make book   build the book into $(BUILD)/html (LMLAB_CACHE=DIR to reuse an lmlab cache)"
	@echo "make test   run every test (see README)"
	@echo "make slides rebuild the chapters' slide decks into $(BUILD)/html/slides (make book does it too)"
	@echo "make pdf    reprint the chapters' PDFs into $(BUILD)/html/pdf (make book does it too; needs Chromium)"
	@echo "make venv   create $(VENV) with requirements.txt, lmlab, reveal.js, configurable-http-proxy and onnxruntime-web (both targets do this first)"
	@echo "make clean  remove $(BUILD)/ (the next build executes every notebook)"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt lib/pyproject.toml slides/package-lock.json hub/package-lock.json live/package-lock.json
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements.txt -e lib
	npm ci --prefix slides --no-audit --no-fund
	npm ci --prefix hub --no-audit --no-fund
	npm ci --prefix live --no-audit --no-fund
	@touch $@

# When lmlab or the environment changed since the last build, forget the executed notebooks
# (jupyter-cache) and Sphinx's record of what it read, so every notebook is executed again.
$(BUILD)/.lmlab-stamp: $(VENV)/.installed $(LMLAB_SOURCES)
	@rm -rf $(BUILD)/.jupyter_cache $(BUILD)/.doctrees
	@mkdir -p $(BUILD) && touch $@

# LMLAB_BOOK=1 is lmlab's build mode. The lmlab cache is a fresh temporary folder unless LMLAB_CACHE
# is given. The log is kept in $(BUILD)/book-build.log (tests can reuse the build: README).
book: $(VENV)/.installed $(BUILD)/.lmlab-stamp
	@cache="$${LMLAB_CACHE:-$$(mktemp -d -t lmlab-cache.XXXXXX)}"; \
	echo "lmlab cache: $$cache"; \
	LMLAB_BOOK=1 LMLAB_CACHE="$$cache" PATH="$(CURDIR)/$(BIN):$$PATH" \
	  $(BIN)/jupyter-book build . -W --keep-going 2>&1 | tee $(BUILD)/book-build.log; \
	status=$${PIPESTATUS[0]}; \
	if [ -z "$$LMLAB_CACHE" ]; then rm -rf "$$cache"; fi; \
	if [ $$status -ne 0 ]; then exit $$status; fi; \
	$(BIN)/python tools/slides.py build
	$(BIN)/python tools/pdf.py build

# The slide decks (reveal.js) from the executed chapters of the last `make book`, with local assets.
slides: $(VENV)/.installed
	$(BIN)/python tools/slides.py build

# Printable chapters: each chapter page of the last `make book` printed by headless Chromium (tools/pdf.py).
pdf: $(VENV)/.installed
	$(BIN)/python tools/pdf.py build

test: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

clean:
	rm -rf $(BUILD)
