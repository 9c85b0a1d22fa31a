#!/usr/bin/env bash
# Entrypoint of the engine-builder image: fetch the ONNX files when missing, then build the engines
# on this GPU with scripts/build_engines.sh (arguments are passed through; --model-set defaults to
# $OCR_MODEL_SET). Engines land in build/engines (mount it; docker/docker-compose.yml does).
set -euo pipefail
cd "${OCR_HOME:-/opt/ocr}"
SET="${OCR_MODEL_SET:-v4}"
ARGS=("$@")
for ((i = 0; i < ${#ARGS[@]}; i++)); do
  [ "${ARGS[$i]}" = "--model-set" ] && SET="${ARGS[$((i + 1))]:-$SET}"
done
case " ${ARGS[*]-} " in *" --model-set "*) ;; *) ARGS=(--model-set "$SET" "${ARGS[@]}");; esac
case " ${ARGS[*]} " in
  *" --dry-run "*|*" --help "*|*" -h "*) ;;
  *) if [ ! -f "build/models/$SET/rec.onnx" ]; then
       echo "build_engines: fetching the $SET ONNX files (scripts/fetch_models.py)" >&2
       python3 scripts/fetch_models.py --model-set "$SET"
     fi;;
esac
exec env PYTHON=python3 scripts/build_engines.sh "${ARGS[@]}"
