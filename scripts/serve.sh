#!/usr/bin/env bash
# Start the OCR server on this machine: set up .venv (dependencies and the pinned models), then run
# `ocr-serve` in the foreground (Ctrl-C / SIGTERM stops it). Every option goes to ocr-serve:
#
#   ./scripts/serve.sh [--model-set SET] [--gpu] [--host ADDR] [--http-port N] [--grpc-port N]
#                      [--metrics-port N] [--param MODEL.KEY=VALUE ...] [--trace-file PATH]
#                      [--no-supervise] [--setup-only]
#
# `./scripts/serve.sh --help` lists ocr-serve's options, `--help-launcher` the launcher's.
# Env: VENV (default .venv), OCR_HOST, OCR_HTTP_PORT, OCR_GRPC_PORT, OCR_METRICS_PORT, OCR_MODEL_SET.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
VENV="$VENV" bash "$ROOT/scripts/setup_env.sh" server
exec "$VENV/bin/ocr-serve" "$@"
