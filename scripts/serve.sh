#!/usr/bin/env bash
# Start the OCR server on this machine: set up .venv, fetch the models, assemble the model
# repository and run tritonserver in the foreground (Ctrl-C / SIGTERM stops it), under the watchdog
# of launch_server.py --supervise (heals crashed Python stubs, restarts a dead server; README
# "Operations"), unless --no-supervise.
#
#   ./scripts/serve.sh [--model-set v4|v5] [--gpu] [--host ADDR] [--http-port N] [--grpc-port N]
#                      [--metrics-port N] [--param MODEL.KEY=VALUE ...] [--trace-file PATH] [--no-supervise]
#                      [--setup-only]
#
# --trace-file PATH: Triton request traces go to PATH (PATH.<n> with log_frequency); tracing starts off
# and is turned on at run time through the trace API (README "Tracing").
#
# Env: VENV (default .venv), OCR_HOST, OCR_HTTP_PORT, OCR_GRPC_PORT, OCR_METRICS_PORT, OCR_MODEL_SET,
#      OCR_ADMIN_KEY (key for the restricted model-repository/admin APIs; default: random, unknown).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
MODEL_SET="${OCR_MODEL_SET:-v4}"
TARGET=cpu
SETUP_ONLY=0
ASSEMBLE_ARGS=()
LAUNCH_ARGS=()
SUPERVISE=(--supervise)
while [ $# -gt 0 ]; do
  case "$1" in
    --model-set) MODEL_SET="$2"; shift 2;;
    --gpu) TARGET=gpu; shift;;
    --param) ASSEMBLE_ARGS+=(--param "$2"); shift 2;;
    --host|--http-port|--grpc-port|--metrics-port) LAUNCH_ARGS+=("$1" "$2"); shift 2;;
    --trace-file) LAUNCH_ARGS+=(--trace-config "triton,file=$2" --trace-config level=OFF); shift 2;;
    --setup-only) SETUP_ONLY=1; shift;;
    --no-supervise) SUPERVISE=(); shift;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    *) echo "serve.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done

VENV="$VENV" bash "$ROOT/scripts/setup_env.sh" server
PY="$VENV/bin/python"
if [ "$TARGET" = gpu ]; then
  # fails fast, saying why, when there is no GPU / TensorRT / engine for this machine
  PYTHONPATH="$ROOT/scripts/trt" "$PY" -m trt_build preflight --model-set "$MODEL_SET" --engines "$ROOT/build/engines"
  LAUNCH_ARGS+=(--gpu)
fi
"$PY" "$ROOT/scripts/assemble_repository.py" --target "$TARGET" --model-set "$MODEL_SET" \
  --out "$ROOT/build/model_repository" ${ASSEMBLE_ARGS[@]+"${ASSEMBLE_ARGS[@]}"}
[ "$SETUP_ONLY" = 1 ] && exit 0
exec "$PY" "$ROOT/scripts/launch_server.py" --model-repository "$ROOT/build/model_repository" \
  ${SUPERVISE[@]+"${SUPERVISE[@]}"} ${LAUNCH_ARGS[@]+"${LAUNCH_ARGS[@]}"}
