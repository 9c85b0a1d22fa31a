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

from ocr_server import launcher, pbtxt
from ocr_server.assemble import assemble, describe_parameters, effective_configs, parse_overrides, request_defaults
from ocr_server.instance import RepositoryInUse, RepositoryLock, instance_repository
from ocr_server.manifest import default_model_set, model_set_names
from ocr_server.paths import BUILD_DIR


def defaults_epilog(model_set: str) -> str:
    """The per-request defaults of the set served without --param, as `ocr-serve --help` shows them."""
    defaults = request_defaults(effective_configs("cpu", model_set))
    listed = "\n".join(f"  {name} = {value}" for name, value in defaults.items())
    return (f"per-request defaults served for model set {model_set} (a request's own values win; change them "
            f"with --param det_preprocess.default_<name>=VALUE):\n{listed}")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    served_set = os.environ.get("OCR_MODEL_SET") or default_model_set()
    ap = argparse.ArgumentParser(prog="ocr-serve", description=__doc__, epilog=defaults_epilog(served_set),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-set", choices=model_set_names(), default=served_set,
                    help="model set of server/ocr_server/models.json (env OCR_MODEL_SET; default: its default_set)")
    ap.add_argument("--gpu", action="store_true", help="serve the TensorRT engines (needs a GPU and built engines)")
    ap.add_argument("--param", action="append", default=[], metavar="MODEL.KEY=VALUE",
                    help="override a config.pbtxt parameter of the assembled repository (repeatable)")
    ap.add_argument("--repository", type=Path,
                    help="where the model repository is assembled (default: its own directory under "
                         "build/repositories/, named <target>-<set>-<http>-<grpc>-<metrics port>, "
                         "removed when the server stops); a repository another server runs on is refused")
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
    own = args.repository is None
    if own:
        ports, _ = launcher.build_parser().parse_known_args(rest)
        args.repository = instance_repository(BUILD_DIR / "repositories", target, args.model_set,
                                              ports.http_port, ports.grpc_port, ports.metrics_port)
    lock = RepositoryLock(args.repository, remove_on_exit=own and not args.setup_only)
    try:
        lock.acquire()
    except RepositoryInUse as exc:
        print(f"ocr-serve: {exc}", file=sys.stderr)
        return 2
    try:
        return _assemble_and_serve(args, rest, target)
    finally:
        lock.release()


def _assemble_and_serve(args: argparse.Namespace, rest: list[str], target: str) -> int:
    repo = assemble(target, args.model_set, args.repository, parse_overrides(args.param), args.models_dir,
                    args.engines_dir)
    print(f"model repository ({target}, {args.model_set}) assembled in {repo}", file=sys.stderr)
    if args.setup_only:
        print(describe_parameters(pbtxt.load_repository(repo)))
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
