PYTHON ?= python3

.PHONY: test install

# Installs torch only when none is importable, so an existing (CUDA) build is kept.
install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -r requirements.txt -r requirements-dev.txt

test: install
	$(PYTHON) -m pytest -q tests
