#!/usr/bin/env bash
# Create/refresh the project venv (idempotent). Sourced by serve.sh and test.sh.
#   VENV=path   venv location (default: <repo>/.venv)
#   PYTHON=...  interpreter to build it from (default: python3; 3.10-3.13, the Triton stub must match)
#   $1 = "test" also installs the test dependencies, kubectl (apt) and the linters' venv
#   TOOLS_VENV=path  the linters' venv (default: <repo>/.venv-tools; requirements/tools.txt)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
MODE="${1:-server}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating venv $VENV with $($PYTHON --version 2>&1)" >&2
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PYV=$("$PY" -c 'import sys;print("%d.%d"%sys.version_info[:2])')
case "$PYV" in 3.10|3.11|3.12|3.13) ;; *) echo "setup: Python $PYV is not supported (3.10-3.13 needed for the Triton stub)" >&2; exit 1;; esac

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }
install_if_changed() {  # name, requirements file: pip-install it unless already done for this content
  local name="$1" req="$2"
  local want; want="$(stamp_of "$req" "$ROOT/python_backend/pyproject.toml" "$ROOT/client/pyproject.toml")"
  local stamp="$VENV/.stamp-$name"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "setup: installing $name dependencies into $VENV" >&2
    if ! "$PY" -m pip install -q --disable-pip-version-check -r "$req" >"$VENV/.pip-$name.log" 2>&1; then
      grep -v "^WARNING: Location" "$VENV/.pip-$name.log" >&2; echo "setup: pip install failed" >&2; exit 1
    fi
    echo "$want" > "$stamp"
  fi
}
install_if_changed server "$ROOT/requirements/server.txt"
# Our own packages, editable: the Triton stub uses this venv, so model.py imports them from here.
# Reinstalled when a pyproject changes (new console scripts, package data).
own="$(stamp_of "$ROOT/python_backend/pyproject.toml" "$ROOT/client/pyproject.toml" "$ROOT/server/pyproject.toml")"
if [ "$(cat "$VENV/.stamp-own" 2>/dev/null || true)" != "$own" ] || ! "$PY" -c 'import ppocr_steps, ocr_client, ocr_server' 2>/dev/null; then
  "$PY" -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT/python_backend" -e "$ROOT/client" \
    -e "$ROOT/server" >"$VENV/.pip-own.log" 2>&1 || { cat "$VENV/.pip-own.log" >&2; exit 1; }
  echo "$own" > "$VENV/.stamp-own"
fi
if [ "$MODE" = "test" ]; then
  install_if_changed test "$ROOT/requirements/test.txt"
  if ! "$PY" -c 'import rapidocr_onnxruntime' 2>/dev/null; then
    "$PY" -m pip install -q --disable-pip-version-check --no-deps rapidocr-onnxruntime==1.4.4 \
      >"$VENV/.pip-peer.log" 2>&1 || { cat "$VENV/.pip-peer.log" >&2; exit 1; }
  fi
  # Prometheus (Debian package) for tests/integration/test_prometheus.py; never fatal: the test skips
  if ! command -v prometheus >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing prometheus (apt-get) for the metrics test" >&2
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
          prometheus; } >"$VENV/.apt-prometheus.log" 2>&1 \
        || echo "setup: WARNING: could not install prometheus (see $VENV/.apt-prometheus.log); its test will skip" >&2
    else
      echo "setup: WARNING: prometheus not installed (needs root + apt-get); tests/integration/test_prometheus.py will skip" >&2
    fi
  fi
  # kubectl (Debian package) renders docker/k8s in tests/unit/test_k8s.py; never fatal: the test skips
  if ! command -v kubectl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing kubectl (apt-get) for the Kubernetes manifest tests" >&2
      { apt-get update -qq && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubectl \
          || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client; }; } \
          >"$VENV/.apt-kubectl.log" 2>&1 \
        || echo "setup: WARNING: could not install kubectl (see $VENV/.apt-kubectl.log); tests/unit/test_k8s.py will skip" >&2
    else
      echo "setup: WARNING: kubectl not installed (needs root + apt-get); tests/unit/test_k8s.py will skip" >&2
    fi
  fi
  # checkov lints docker/ and docker/k8s; its own venv (its pins clash with pytest's), TOOLS_VENV
  TOOLS_VENV="${TOOLS_VENV:-$ROOT/.venv-tools}"
  tools_want="$(stamp_of "$ROOT/requirements/tools.txt")"
  if [ "$(cat "$TOOLS_VENV/.stamp-tools" 2>/dev/null || true)" != "$tools_want" ]; then
    echo "setup: installing the linters (requirements/tools.txt) into $TOOLS_VENV" >&2
    [ -x "$TOOLS_VENV/bin/python" ] || "$PYTHON" -m venv "$TOOLS_VENV"
    if ! "$TOOLS_VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements/tools.txt" \
        >"$TOOLS_VENV/.pip-tools.log" 2>&1; then
      grep -v "^WARNING: Location" "$TOOLS_VENV/.pip-tools.log" >&2; echo "setup: pip install of the linters failed" >&2; exit 1
    fi
    echo "$tools_want" > "$TOOLS_VENV/.stamp-tools"
  fi
fi
"$PY" -c 'import ppocr_steps, ocr_client, ocr_server, numpy, cv2, onnxruntime, tritonclient.grpc' \
  || { echo "setup: the venv $VENV is incomplete; delete it and run again" >&2; exit 1; }
"$VENV/bin/ocr-fetch-models" >&2
