#!/usr/bin/env bash
# Server entrypoint (GPU target): `ocr-serve --gpu`, the supervised launcher of both targets. It checks
# the GPU, TensorRT and the engines (preflight), assembles the GPU repository into a writable directory
# and runs tritonserver under the watchdog; the server flags live in the launcher
# (server/ocr_server/launcher.py), this passes options only. Arguments go to ocr-serve, e.g.
# --param MODEL.KEY=VALUE or --log-verbose 1 (`ocr-serve --help`, `--help-launcher`).
#   env OCR_MODEL_SET (a set of server/ocr_server/models.json), OCR_REPOSITORY (where to assemble),
#       OCR_ADMIN_KEY (key of the restricted admin APIs; default: random, known only to the watchdog)
set -euo pipefail
exec ocr-serve --gpu --host 0.0.0.0 --repository "${OCR_REPOSITORY:-/opt/ocr/run/model_repository}" "$@"
