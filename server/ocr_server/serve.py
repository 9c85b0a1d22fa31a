"""`ocr-serve`: the one launcher of both targets.

Checks the GPU prerequisites (with --gpu), assembles the model repository of the chosen model set and
runs tritonserver under the watchdog (server/ocr_server/launcher.py). Options it does not know (ports,
host, watchdog intervals, extra tritonserver flags) go to the launcher: `ocr-serve --help-launcher`.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ocr_server import launcher
from ocr_server.assemble import assemble, parse_overrides
from ocr_server.manifest import default_model_set, model_set_names
from ocr_server.paths import BUILD_DIR


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    ap = argparse.ArgumentParser(prog="ocr-serve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-set", choices=model_set_names(),
                    default=os.environ.get("OCR_MODEL_SET") or default_model_set(),
                    help="model set of server/ocr_server/models.json (env OCR_MODEL_SET; default: its default_set)")
    ap.add_argument("--gpu", action="store_true", help="serve the TensorRT engines (needs a GPU and built engines)")
    ap.add_argument("--param", action="append", default=[], metavar="MODEL.KEY=VALUE",
                    help="override a config.pbtxt parameter of the assembled repository (repeatable)")
    ap.add_argument("--repository", type=Path, default=BUILD_DIR / "model_repository",
                    help="where the model repository is assembled")
    ap.add_argument("--models-dir", type=Path, default=BUILD_DIR / "models")
    ap.add_argument("--engines-dir", type=Path, default=BUILD_DIR / "engines")
    ap.add_argument("--trace-file", type=Path,
                    help="Triton request traces go here; tracing starts off and is turned on through the trace API")
    ap.add_argument("--no-supervise", action="store_true", help="run tritonserver without the watchdog")
    ap.add_argument("--setup-only", action="store_true", help="assemble the repository and exit")
    ap.add_argument("--help-launcher", action="store_true", help="show the launcher's options and exit")
    return ap.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, rest = parse_args(argv)
    if args.help_launcher:
        return launcher.main(["--help"])
    if args.gpu:
        from ocr_server.engines.cli import main as engines_main  # noqa: PLC0415 - TensorRT tooling only on GPU

        code = engines_main(["preflight", "--model-set", args.model_set, "--engines", str(args.engines_dir),
                             "--models-dir", str(args.models_dir)])
        if code:
            return code
    target = "gpu" if args.gpu else "cpu"
    repo = assemble(target, args.model_set, args.repository, parse_overrides(args.param), args.models_dir,
                    args.engines_dir)
    print(f"model repository ({target}, {args.model_set}) assembled in {repo}", file=sys.stderr)
    if args.setup_only:
        return 0
    launch = ["--model-repository", str(repo)]
    if not args.no_supervise:
        launch.append("--supervise")
    if args.gpu:
        launch.append("--gpu")
    if args.trace_file:
        launch += ["--trace-config", f"triton,file={args.trace_file}", "--trace-config", "level=OFF"]
    return launcher.main(launch + rest)


if __name__ == "__main__":
    sys.exit(main())
