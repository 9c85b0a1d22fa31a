#!/usr/bin/env bash
# Build the FP16 TensorRT engines (det, cls, rec) of a model set for the GPU target, gate them
# against onnxruntime FP32, and write build/engines/<set>/{<model>/model.plan,manifest.json}.
#
#   ./scripts/build_engines.sh [--model-set SET] [--dry-run] [--out DIR] [--workspace MIB]
#                              [--gpu-target 7.5] [--builder auto|trtexec|python] [--precision fp16|fp32]
#                              [--models det_model,cls_model,rec_model] [--calib-dir DIR]
#                              [--no-fallback] [--skip-fp16-gate] [--timing-cache FILE] [--show-fallback]
#
# Run it on the GPU that will serve (engines are bound to the TensorRT version and GPU
# architecture), inside the NGC image of docker/ (docker compose --profile build run --rm
# build-engines) or on any machine with TensorRT 10.x. --dry-run prints the exact trtexec commands
# and needs neither TensorRT nor a GPU. This is `ocr-engines build`; full option list: --help.
#
# Env: PYTHON (interpreter; default .venv/bin/python when present, else python3), TRTEXEC (trtexec path),
#      OCR_EVALDATA (calibration images for the FP16 gate).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "build_engines.sh: no Python interpreter '$PYTHON' (set PYTHON=/path/to/python3)" >&2
  exit 2
fi
# The packages run from the checkout when they are not installed (a bare TensorRT machine).
if ! "$PYTHON" -c 'import ocr_server' 2>/dev/null; then
  export PYTHONPATH="$ROOT/server:$ROOT/python_backend${PYTHONPATH:+:$PYTHONPATH}"
fi
case "${1:-}" in
  -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; echo; exec "$PYTHON" -m ocr_server.engines build --help;;
esac
exec "$PYTHON" -m ocr_server.engines build "$@"
