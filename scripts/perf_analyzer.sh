#!/usr/bin/env bash
# Run Triton's perf_analyzer against the `ocr` ensemble with real JPEGs as input.
#
#   ./scripts/perf_analyzer.sh [--url HOST:PORT] [--images DIR] [--num-images N] [--http]
#                              [--out DIR] [-- PERF_ANALYZER_ARGS...]
#
#   --url HOST:PORT   server to measure (default 127.0.0.1:8001, serve.sh's gRPC port; with --http 8000)
#   --images DIR      where the JPEGs come from (default ../shared/evaldata, searched recursively)
#   --num-images N    how many JPEGs go into the input data, spread over the sorted list (default 8);
#                     perf_analyzer sends them in turn, one image per request
#   --http            use HTTP instead of gRPC
#   --out DIR         where the input-data JSON and the CSV report go (default build/perf_analyzer)
#   everything after `--` (or any option not listed here) is passed to perf_analyzer; it comes after the
#   defaults below, so it overrides them, e.g. `-- --concurrency-range 1:8:1 --measurement-request-count 20`.
#
# Defaults passed to perf_analyzer: -m ocr -i grpc --input-data <json> --shape image_bytes:1
#   --concurrency-range 1:4 --measurement-mode count_windows --measurement-request-count <2 x N>
#   -f <out>/perf_analyzer.csv --verbose-csv
# (each measurement window then holds every image twice, so windows are comparable; on a busy machine add
# e.g. `-- --stability-percentage 25` if perf_analyzer cannot obtain a stable measurement)
#
# perf_analyzer comes from the tritonclient==2.41.1 wheel (the newer `perf-analyzer` package on PyPI is
# an empty placeholder). It is extracted once into build/tools/perf_analyzer/ (`pip download` + unzip; the
# old client is never installed into the venv), and the two libraries it links, libb64.so.0d and
# libcudart.so.12, are symlinks to the copies in the venv's nvidia-pytriton wheel. Needs the venv of
# ./scripts/serve.sh (VENV, default .venv). See docs/benchmarks.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
SHARED="${OCR_SHARED_DIR:-$ROOT/../shared}"
TOOLS="$ROOT/build/tools/perf_analyzer"
PA_VERSION=2.41.1
# sha256 of tritonclient-2.41.1-py3-none-manylinux1_x86_64.whl (PyPI)
PA_WHEEL_SHA256_X86_64=22ad56ae5ab25518862dec85af0a8246a32a1e14e2ee1d86f1444ce432c254e1

URL=""
IMAGES="$SHARED/evaldata"
NUM_IMAGES=8
PROTOCOL=grpc
OUT="$ROOT/build/perf_analyzer"
PASS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --url) URL="$2"; shift 2;;
    --images) IMAGES="$2"; shift 2;;
    --num-images) NUM_IMAGES="$2"; shift 2;;
    --http) PROTOCOL=http; shift;;
    --out) OUT="$2"; shift 2;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    --) shift; PASS+=("$@"); break;;
    *) PASS+=("$1"); shift;;
  esac
done
[ -n "$URL" ] || URL="127.0.0.1:$([ "$PROTOCOL" = http ] && echo 8000 || echo 8001)"
[ -x "$PY" ] || { echo "perf_analyzer.sh: no venv at $VENV: run ./scripts/serve.sh --setup-only first" >&2; exit 1; }

# --- 1. the binary and its libraries (once) -----------------------------------------------------------
PA="$TOOLS/bin/perf_analyzer"
if [ ! -x "$PA" ]; then
  echo "perf_analyzer.sh: extracting perf_analyzer $PA_VERSION into $TOOLS" >&2
  rm -rf "$TOOLS/wheel"
  mkdir -p "$TOOLS/wheel" "$TOOLS/bin"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    "tritonclient==$PA_VERSION" -d "$TOOLS/wheel" >&2
  WHEEL="$(ls "$TOOLS"/wheel/tritonclient-"$PA_VERSION"-*.whl)"
  if [ "$(uname -m)" = x86_64 ]; then
    echo "$PA_WHEEL_SHA256_X86_64  $WHEEL" | sha256sum -c --quiet - \
      || { echo "perf_analyzer.sh: $WHEEL does not have the pinned sha256" >&2; exit 1; }
  else
    echo "perf_analyzer.sh: no sha256 pinned for $(uname -m); using $WHEEL unchecked" >&2
  fi
  "$PY" - "$WHEEL" "$PA" "$PA_VERSION" <<'EOF'
import os, shutil, sys, zipfile
wheel, dest, version = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(f"tritonclient-{version}.data/data/bin/perf_analyzer") as src, \
        open(dest + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
EOF
  rm -rf "$TOOLS/wheel"
fi
SP="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
LIBS="$SP/nvidia_pytriton.libs"
mkdir -p "$TOOLS/lib"
link_lib() {  # link name, glob in the pytriton wheel's libs
  local target
  target="$(ls "$LIBS"/$2 2>/dev/null | head -n 1)"
  [ -n "$target" ] || { echo "perf_analyzer.sh: no $2 in $LIBS (is nvidia-pytriton installed in $VENV?)" >&2; exit 1; }
  ln -sfn "$target" "$TOOLS/lib/$1"
}
link_lib libb64.so.0d 'libb64-*.so.0d'
link_lib libcudart.so.12 'libcudart-*.so.12*'
export LD_LIBRARY_PATH="$TOOLS/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# --- 2. real input data: N JPEGs as BYTES elements --------------------------------------------------
mkdir -p "$OUT"
DATA="$OUT/input_data.json"
"$PY" - "$IMAGES" "$NUM_IMAGES" "$DATA" <<'EOF'
# perf_analyzer's --input-data JSON: {"data": [{"image_bytes": {"b64": ..., "shape": [1]}}, ...]}, one entry
# per request. A "b64" value is taken as the tensor's raw bytes, and a BYTES tensor's raw form is each
# element prefixed with its length as a little-endian uint32, so that prefix is part of what is encoded.
import base64, json, struct, sys
from pathlib import Path
root, n, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
jpegs = sorted((p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"}),
               key=lambda p: p.relative_to(root).parts)
if not jpegs:
    sys.exit(f"perf_analyzer.sh: no JPEG under {root}")
picked = jpegs if n >= len(jpegs) else [jpegs[(i * len(jpegs)) // n] for i in range(n)]
entries = []
for p in picked:
    blob = p.read_bytes()
    entries.append({"image_bytes": {"b64": base64.b64encode(struct.pack("<I", len(blob)) + blob).decode("ascii"),
                                    "shape": [1]}})
out.write_text(json.dumps({"data": entries}))
print(f"perf_analyzer.sh: input data {out}: {len(picked)} JPEGs "
      f"({sum(p.stat().st_size for p in picked) / 2**20:.1f} MiB) from {root}", file=sys.stderr)
for p in picked:
    print(f"  {p.relative_to(root)}", file=sys.stderr)
EOF

# --- 3. run --------------------------------------------------------------------------------------------
REQUESTS="$("$PY" -c 'import json, sys; print(2 * len(json.load(open(sys.argv[1]))["data"]))' "$DATA")"
CMD=("$PA" -m ocr -u "$URL" -i "$PROTOCOL" --input-data "$DATA" --shape image_bytes:1
     --concurrency-range 1:4 --measurement-mode count_windows --measurement-request-count "$REQUESTS"
     -f "$OUT/perf_analyzer.csv" --verbose-csv ${PASS[@]+"${PASS[@]}"})
echo "perf_analyzer.sh: ${CMD[*]}" >&2
exec "${CMD[@]}"
