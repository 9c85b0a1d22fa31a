#!/usr/bin/env bash
# Server entrypoint (GPU target): refuse to start without a GPU, TensorRT or matching engines,
# assemble the GPU model repository, then run tritonserver. Extra arguments go to tritonserver.
#   env OCR_MODEL_SET (v4|v5), OCR_ASSEMBLE_ARGS (extra assemble_repository.py args, e.g. --param ...)
set -euo pipefail
cd "${OCR_HOME:-/opt/ocr}"
SET="${OCR_MODEL_SET:-v4}"
export PYTHONPATH="$PWD/scripts/trt${PYTHONPATH:+:$PYTHONPATH}"

# 1. GPU present, TensorRT present, engines built for this TensorRT + GPU and for the current ONNX/profiles
python3 -m trt_build preflight --model-set "$SET" --engines build/engines --models-dir build/models

# 2. repository: ensemble + Python steps + TensorRT runtime models, with the GPU step parameters
STEP_PARAMS="$(python3 -m trt_build step-params)"
PARAMS=()
for kv in $STEP_PARAMS; do PARAMS+=(--param "$kv"); done
# shellcheck disable=SC2086
python3 server/ocr_server/assemble.py --target gpu --model-set "$SET" --out build/model_repository \
  --models-dir build/models --engines-dir build/engines "${PARAMS[@]}" ${OCR_ASSEMBLE_ARGS:-}

# 3. serve; glibc keeps per-request buffers on the heap instead of a fresh mmap each time (page
# faults on every image: see server/ocr_server/launcher.py, which sets the same for the embedded server)
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-33554432}" MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-268435456}"
# (summary latencies feed the p50/p99 panels of docker/grafana/dashboards/ocr.json)
exec tritonserver --model-repository="$PWD/build/model_repository" \
  --disable-auto-complete-config \
  --metrics-config summary_latencies=true \
  --allow-gpu-metrics=true \
  --exit-timeout-secs=15 \
  "$@"
