# Two commands for a fresh machine: `make demo` and `make test`. Both set up .venv (once) and the
# Fashion-MNIST data (once), so running them again is fast.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test setup data lint clean notebooks

setup: $(STAMP) data

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "convscope needs Python >= 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# Fashion-MNIST comes from Debian's package dataset-fashion-mnist.
data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Fashion-MNIST (Debian package dataset-fashion-mnist) ..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
		echo "Fashion-MNIST is not installed in $(FASHION_DIR)."; \
		echo "Install it with:  sudo apt-get install dataset-fashion-mnist"; \
	fi

demo: setup
	@$(BIN)/python -m convscope.demo

test: setup
	$(BIN)/python -m pytest -q -n auto

# The lesson's notebooks, executed and saved with their outputs (what people read on the web; a few minutes).
notebooks: setup
	$(BIN)/python notebooks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench notebooks
	$(BIN)/ruff format --check src tests bench notebooks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
