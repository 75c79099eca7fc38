PYTHON ?= python3

.PHONY: test install

# Installs torch only when none is importable, so an existing (CUDA) build is kept.
install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -r requirements.txt -r requirements-dev.txt

# The library and node tests, the registry's security lint, then the ComfyUI tests inside ComfyUI
# 0.8.0 and 0.33.0 (each set up once per machine and cached: tests/comfyui_versions.sh).
test: install
	$(PYTHON) -m ruff check --select S102,S307,E702 .
	$(PYTHON) -m pytest -q tests --ignore=tests/test_comfy_server.py
	bash tests/comfyui_versions.sh
