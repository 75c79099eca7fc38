#!/usr/bin/env bash
# Runs the ComfyUI tests inside real ComfyUI trees, one per supported line (0.8.0, the oldest, and
# 0.33.0, current), headless on the CPU. Each ComfyUI and its venv is set up once per machine with
# ../shared/tools/comfy_check/setup.sh (idempotent) and cached under $LPD_COMFY_CACHE (default
# ~/.cache/comfyui-lpd/<version>); later runs reuse it. Fails if any ComfyUI test is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${LPD_SHARED:-../shared}"
CACHE="${LPD_COMFY_CACHE:-$HOME/.cache/comfyui-lpd}"
VERSIONS="${LPD_COMFY_VERSIONS:-0.8.0 0.33.0}"
TESTS=(tests/test_nodes.py tests/test_editing_nodes.py tests/test_comfy_server.py)

for version in $VERSIONS; do
  dir="$CACHE/$version/ComfyUI" venv="$CACHE/$version/venv"
  mkdir -p "$CACHE/$version"
  for path in "$dir" "$venv"; do  # a link to a tree that is gone (a cleaned /tmp): set up anew
    if [[ -L "$path" && ! -e "$path" ]]; then rm "$path"; fi
  done
  start=$(date +%s)
  COMFY_TARBALL="$SHARED/comfyui/ComfyUI-$version.tar.gz" COMFY_DIR="$dir" COMFY_VENV="$venv" \
    bash "$SHARED/tools/comfy_check/setup.sh" > "$CACHE/setup-$version.log" 2>&1 \
    || { tail -n 30 "$CACHE/setup-$version.log"; exit 1; }
  # the pack's own requirements (torch is already there: kept) and pytest, once per venv
  marker="$venv/.lpd_requirements_$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)"
  if [[ ! -f "$marker" ]]; then
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r requirements.txt -r requirements-dev.txt \
      2>&1 | grep -v 'neither a file nor a directory' || true
    touch "$marker"
  fi
  echo "ComfyUI $version ready in $(( $(date +%s) - start )) s ($dir)"
  report="$CACHE/pytest-$version.txt"
  COMFYUI_DIR="$dir" COMFY_VENV="$venv" "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider "${TESTS[@]}" \
    | tee "$report"
  if grep -Eq '[0-9]+ skipped' "$report"; then
    echo "ComfyUI $version: tests were skipped; every ComfyUI test must run here" >&2
    exit 1
  fi
done
