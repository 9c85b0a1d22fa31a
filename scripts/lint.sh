#!/usr/bin/env bash
# The quality gates scripts/test.sh runs before pytest: ruff and mypy over the whole tree; any finding
# fails. Every check runs, so one call lists all findings. Needs requirements/test.txt in VENV (.venv).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
cd "$ROOT"
failed=0
check() { "$@" || failed=1; }
mypy() { "$VENV/bin/mypy" --no-error-summary "$@"; }
check "$VENV/bin/ruff" check --quiet .
MYPYPATH=tests check mypy server/ocr_server python_backend/ppocr_steps client/ocr_client model_repository/cpu scripts
# Test folders have no __init__.py: each is checked with the roots pytest and its conftest put on sys.path.
MYPYPATH=tests:tests/unit:tests/fakes check mypy tests/unit tests/fakes tests/pdf_samples.py
MYPYPATH=tests:tests/integration:tests/unit check mypy tests/integration
MYPYPATH=tests/gpu check mypy tests/gpu
# Every runtime model's model.py is the module `model`: one at a time, named by its file.
for f in python_backend/models/*/1/model.py; do check mypy --no-explicit-package-bases "$f"; done
if [ "$failed" != 0 ]; then echo "lint: ruff/mypy findings above (scripts/lint.sh)" >&2; fi
exit "$failed"
