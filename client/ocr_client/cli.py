"""``ocr-client``: run OCR on image files through the Triton ``ocr`` ensemble.

Exit codes: 0 success, 1 some image failed (or the server is unavailable /
not ready), 2 usage error.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ._client import OcrClient
from ._endpoints import DEFAULT_PORTS, PROTOCOLS, parse_endpoints
from ._errors import OcrError, OcrInvalidInputError
from ._files import DOCUMENT_EXTENSIONS, IMAGE_EXTENSIONS, expand_paths, vis_names
from ._params import OcrParams, param_specs
from ._results import OcrResult
from ._runner import Job, Outcome, Reorder, run_jobs
from ._triton import resolve_url

__all__ = ["build_parser", "error_record", "main", "prediction_record"]

log = logging.getLogger("ocr_client.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _JoinUrls(argparse.Action):
    """A repeated ``--url`` adds endpoints: ``--url a:1 --url b:2`` is ``--url a:1,b:2``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        previous = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, values if previous is None else f"{previous},{values}")


def _connection_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("server")
    g.add_argument("--url", metavar="HOST:PORT", action=_JoinUrls,
                   help=f"server address (default localhost:{DEFAULT_PORTS['grpc']} for grpc, "
                        f"localhost:{DEFAULT_PORTS['http']} for http); repeat it or separate with commas "
                        "to spread requests over several servers; gRPC also takes a resolver URI such as "
                        "dns:///NAME:PORT (every address of NAME)")
    g.add_argument("--protocol", choices=PROTOCOLS, default="grpc", help="default: %(default)s")
    g.add_argument("--model-name", default="ocr", help="ensemble name (default: %(default)s)")
    g.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="seconds per call, retries included (default: %(default)s)")
    g.add_argument("--retries", type=int, default=3, metavar="N",
                   help="retries when the server is unavailable (default: %(default)s)")
    g.add_argument("--auth-token-file", metavar="PATH",
                   help="send the bearer token in PATH (servers started with --auth-token-file)")
    g.add_argument("--ssl", action="store_true", help="TLS, verified against the system's CAs")
    g.add_argument("--root-certificates", metavar="PEM", help="TLS, verified against this CA file (implies --ssl)")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``ocr-client`` argument parser."""
    from . import __version__

    conn = _connection_options()
    parser = argparse.ArgumentParser(
        prog="ocr-client", description="Run PP-OCR text detection and recognition on images "
                                       "through a Triton Inference Server.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    infer = sub.add_parser(
        "infer", parents=[conn], help="OCR image and PDF files and folders",
        description="OCR image and PDF files and folders (searched recursively for "
                    f"{', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS | DOCUMENT_EXTENSIONS))}). "
                    "Prints a summary per image, or writes one JSON line per image (per page of a PDF) "
                    "with --jsonl; a file that fails gets a line with its \"error\". Failed files are "
                    "also reported on stderr and make the exit code 1.")
    infer.add_argument("paths", nargs="+", metavar="PATH", help="image file or folder")
    out = infer.add_argument_group("output")
    out.add_argument("--jsonl", metavar="OUT",
                     help="write predictions ({\"image\", \"lines\"} per line, input order; PDF pages "
                          "add \"page\" (1-based), failed files have \"error\" instead of \"lines\") "
                          "to OUT ('-' = stdout) instead of printing a summary")
    out.add_argument("--vis-dir", metavar="DIR",
                     help="write each image with its polygons drawn to DIR/<stem>.vis.jpg")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    infer.add_argument("--concurrency", type=int, default=1, metavar="N",
                       help="parallel requests, one client per worker (default: %(default)s)")
    _add_param_options(infer.add_argument_group("OCR parameters (default: the server's)"))

    health = sub.add_parser(
        "health", parents=[conn], help="check that the server and the model are ready",
        description="Print whether the server is live and the server and model are ready; "
                    "exit 0 when ready, 1 otherwise.")
    health.add_argument("--wait", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for readiness (default: no wait)")
    return parser


def _add_param_options(group: argparse._ArgumentGroup) -> None:
    """One ``--flag`` per :class:`OcrParams` field, typed and documented by its spec."""
    for p in param_specs():
        flag = "--" + p.name.replace("_", "-")
        kind = p.spec.datatype
        if kind == "BOOL":
            group.add_argument(flag, dest=p.name, action=argparse.BooleanOptionalAction, default=None,
                               help=p.spec.help)
        elif p.spec.choices is not None:
            group.add_argument(flag, dest=p.name, choices=p.spec.choices, help=p.spec.help)
        else:
            group.add_argument(flag, dest=p.name, type=int if kind == "INT32" else float if kind == "FP32" else str,
                               metavar=p.spec.metavar, help=p.spec.help)


def _params_from_args(args: argparse.Namespace) -> OcrParams:
    return OcrParams(**{p.name: getattr(args, p.name) for p in param_specs()})


def prediction_record(image: str, result: OcrResult) -> dict[str, Any]:
    """One predictions-format record: ``{"image": ..., "lines": [{"poly", "text", "score"}]}``,
    with ``"page"`` (1-based) for a page of a PDF."""
    page = {} if result.page is None else {"page": result.page + 1}
    return {"image": image, **page, **result.to_dict()}


def error_record(image: str, message: str) -> dict[str, Any]:
    """The record of a file that failed: ``{"image": ..., "error": ...}``."""
    return {"image": image, "error": message}


def _make_client(args: argparse.Namespace) -> OcrClient:
    token = None
    if args.auth_token_file:
        with open(args.auth_token_file, encoding="utf-8") as f:
            token = f.read().strip()
    return OcrClient(args.url, protocol=args.protocol, model_name=args.model_name,
                     timeout=args.timeout, retries=args.retries, auth_token=token, ssl=args.ssl,
                     root_certificates=args.root_certificates)


def _print_summary(outcome: Outcome, out: TextIO) -> None:
    assert outcome.results is not None
    for result in outcome.results:
        page = "" if result.page is None else f" page {result.page + 1}"
        print(f"{outcome.path}{page} ({len(result.lines)} lines)", file=out)
        for line in result.lines:
            print(f"  {line.score:.3f}  {line.text}", file=out)


def _cmd_infer(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        params = _params_from_args(args)
    except OcrInvalidInputError as err:
        parser.error(err.message)
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    try:
        paths = expand_paths(args.paths)
    except FileNotFoundError as err:
        parser.error(str(err))
    if not paths:
        parser.error(f"no image or PDF files ({', '.join(sorted(IMAGE_EXTENSIONS | DOCUMENT_EXTENSIONS))}) "
                     f"under {args.paths}")
    vis_paths: list[str | None] = [None] * len(paths)
    if args.vis_dir:
        try:
            os.makedirs(args.vis_dir, exist_ok=True)
        except OSError as err:
            parser.error(f"--vis-dir {args.vis_dir}: {err.strerror or err}")
        vis_paths = [os.path.join(args.vis_dir, n) for n in vis_names(paths)]

    jsonl: TextIO | None = None
    if args.jsonl == "-":
        jsonl = sys.stdout
    elif args.jsonl:
        try:
            jsonl = open(args.jsonl, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as err:
            parser.error(f"--jsonl {args.jsonl}: {err.strerror or err}")

    jobs = [Job(i, p, v) for i, (p, v) in enumerate(zip(paths, vis_paths, strict=True))]
    total, done, failed = len(jobs), 0, 0
    progress = total > 1 and not args.quiet
    reorder = Reorder()

    def emit(ready: list[Outcome]) -> None:
        for o in ready:
            if jsonl is not None:
                if o.results is None:
                    records = [error_record(o.path, o.error.message if o.error else "not processed")]
                else:
                    records = [prediction_record(o.path, r) for r in o.results]
                for record in records:
                    jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
                jsonl.flush()
            elif o.results is not None:
                _print_summary(o, sys.stdout)

    try:
        for outcome in run_jobs(jobs, lambda: _make_client(args), params,
                                concurrency=args.concurrency):
            done += 1
            if outcome.error is not None:
                failed += 1
                print(f"error: {outcome.path}: {outcome.error.message}", file=sys.stderr)
            elif progress:
                assert outcome.results is not None
                lines = sum(len(r.lines) for r in outcome.results)
                pages = f"{len(outcome.results)} pages, " if outcome.results[0].page is not None else ""
                print(f"[{done}/{total}] {outcome.path} ({pages}{lines} lines, "
                      f"{outcome.seconds:.2f} s)", file=sys.stderr)
            if outcome.vis_error:
                print(f"warning: {outcome.path}: no visualisation: {outcome.vis_error}",
                      file=sys.stderr)
            emit(reorder.push(outcome))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        emit(reorder.drain())
        if jsonl is not None and jsonl is not sys.stdout:
            jsonl.close()
    skipped = total - done
    if skipped:
        print(f"stopped: the server at {resolve_url(args.url, args.protocol)} is unavailable; "
              f"{skipped} image(s) not processed", file=sys.stderr)
    if failed or skipped:
        print(f"{failed + skipped} of {total} image(s) failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _cmd_health(args: argparse.Namespace) -> int:
    with _make_client(args) as client:
        if args.wait > 0:
            try:
                client.wait_until_ready(args.wait)
            except OcrError as err:  # not ready in time: reported by the probes below
                log.debug("%s", err)
        live = client.is_live()
        ready = client.is_ready()
    print(f"server: {client.url} ({client.protocol}), model: {client.model_name}")
    print(f"live: {'yes' if live else 'no'}")
    print(f"ready: {'yes' if ready else 'no'}")
    return EXIT_OK if ready else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ocr-client``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        if args.timeout <= 0:
            parser.error("--timeout must be > 0")
        if args.retries < 0:
            parser.error("--retries must be >= 0")
        try:
            parse_endpoints(args.url, args.protocol)
        except ValueError as err:
            parser.error(f"--url: {err}")
        if args.command == "infer":
            return _cmd_infer(args, parser)
        return _cmd_health(args)
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except BrokenPipeError:  # stdout closed early (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
