#!/usr/bin/env bash
# Server entrypoint of the images: `ocr-serve`, the supervised launcher of both targets (--gpu in the
# server image, OCR_TARGET=gpu; without it in the cpu image). It checks the GPU, TensorRT and the
# engines (preflight, GPU only), assembles the repository into a writable directory and runs
# tritonserver under the watchdog; the server flags live in the launcher
# (server/ocr_server/launcher.py), this passes options only. Arguments go to ocr-serve, e.g.
# --param MODEL.KEY=VALUE or --log-verbose 1 (`ocr-serve --help`, `--help-launcher`).
#   env OCR_MODEL_SET (a set of server/ocr_server/models.json), OCR_REPOSITORY (where to assemble),
#       OCR_SOCKET_DIR (owner-only directory of Triton's own Unix sockets behind the front; default: a new one),
#       OCR_ADMIN_KEY (with --no-front: key of the restricted admin APIs; default: random, only the watchdog's)
set -euo pipefail
case "${OCR_TARGET:-gpu}" in
  gpu) exec ocr-serve --gpu --host 0.0.0.0 --repository "${OCR_REPOSITORY:-/opt/ocr/run/model_repository}" "$@";;
  cpu) exec ocr-serve --host 0.0.0.0 --repository "${OCR_REPOSITORY:-/opt/ocr/run/model_repository}" "$@";;
  *) echo "entrypoint: OCR_TARGET must be gpu or cpu, not '${OCR_TARGET}'" >&2; exit 2;;
esac
