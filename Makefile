PYTHON ?= python3
# Where torch comes from when none is installed: PyPI's torch==2.13.0 unless TORCH_INDEX names another
# index (PyPI's Linux wheel is the multi-GB CUDA build; e.g. PyTorch's CPU-only index avoids that).
TORCH_INDEX ?=
# check-torch: the torch version to try and the venv (outside the checkout) it is installed in.
TORCH_VERSION ?= 2.11.0
TORCH_VENV ?= ../venv-torch-$(TORCH_VERSION)

.PHONY: test install install-runtime demo check-torch

# Installs torch only when none is importable, so an existing (CUDA) build is kept.
install-runtime:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PYTHON) -m pip install -q -r requirements.txt

install: install-runtime
	$(PYTHON) -m pip install -q -r requirements-dev.txt

# The main job: one image of class 3 with the bundled demo model, offline, written to demo.png.
demo: install-runtime
	$(PYTHON) -m lpd_core generate --class 3 --out demo.png

# The library and node tests, the registry's security lint, then the ComfyUI tests inside ComfyUI
# 0.8.0 and 0.33.0 (each set up once per machine and cached: tests/comfyui_versions.sh).
test: install
	$(PYTHON) -m ruff check --select S102,S307,E702 .
	$(PYTHON) -m pytest -q tests --ignore=tests/test_comfy_server.py
	bash tests/comfyui_versions.sh

# The library's core tests and gpu_check --quick on another torch (and Python: PYTHON=python3.12), in a
# venv of its own that is kept for the next time; not part of `make test` (a first run downloads GBs).
check-torch:
	test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install -q torch==$(TORCH_VERSION) -r requirements.txt pytest
	$(TORCH_VENV)/bin/python -m pytest -q tests/test_parity.py tests/test_fast.py tests/test_step.py \
		tests/test_generate.py tests/test_weights.py tests/test_gpu_check.py
