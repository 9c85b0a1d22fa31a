#!/usr/bin/env bash
# Entrypoint of the engine-builder image: fetch (or refresh) the ONNX files, then build the engines
# on this GPU with scripts/build_engines.sh (arguments are passed through; --model-set defaults to
# $OCR_MODEL_SET). Engines land in build/engines (mount it; docker/docker-compose.yml does).
set -euo pipefail
cd "${OCR_ROOT:-/opt/ocr}"
SET="${OCR_MODEL_SET:-v4}"
ARGS=("$@")
for ((i = 0; i < ${#ARGS[@]}; i++)); do
  [ "${ARGS[$i]}" = "--model-set" ] && SET="${ARGS[$((i + 1))]:-$SET}"
done
case " ${ARGS[*]-} " in *" --model-set "*) ;; *) ARGS=(--model-set "$SET" "${ARGS[@]}");; esac
case " ${ARGS[*]} " in
  *" --dry-run "*|*" --help "*|*" -h "*) ;;
  *) # always: fetch_models.py skips a set that is current and regenerates one made by older graph
     # edits (server/ocr_server/onnx_edits.py), which must not be built into engines
     ocr-fetch-models --model-set "$SET";;
esac
exec env PYTHON=python3 scripts/build_engines.sh "${ARGS[@]}"
