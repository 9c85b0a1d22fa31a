#!/usr/bin/env bash
# Run the quality gates (ruff and mypy over the whole tree: scripts/lint.sh), then the whole test
# suite (no GPU needed): unit tests, repository checks, and integration tests that start a real
# tritonserver. Sets up .venv like serve.sh (plus the test dependencies).
#
#   ./scripts/test.sh [pytest args...]      e.g. ./scripts/test.sh tests/unit -q
#
# Env: VENV (default .venv), OCR_SHARED_DIR (default ../shared: evaluation data; tests that need
# it skip cleanly when it is absent).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
export TOOLS_VENV="${TOOLS_VENV:-$ROOT/.venv-tools}"  # checkov, found there by the tests
VENV="$VENV" bash "$ROOT/scripts/setup_env.sh" test
cd "$ROOT"
export PYTHONDONTWRITEBYTECODE=1
VENV="$VENV" bash "$ROOT/scripts/lint.sh"
if [ $# -eq 0 ]; then set -- tests; fi
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
