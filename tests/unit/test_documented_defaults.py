"""Every documented per-request default equals the served one, and `ocr-serve --help` shows the served ones.

The served defaults are det_preprocess's `default_<name>` parameters after assembly (config.pbtxt, the
model-set manifest, profiles.json for the GPU target), read through the same code as `ocr-assemble`.
"""
from __future__ import annotations

import math
import re
from dataclasses import fields
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.grpc.model_config_pb2")

from ocr_server import serve  # noqa: E402
from ocr_server.assemble import effective_configs, request_defaults  # noqa: E402
from ocr_server.manifest import default_model_set  # noqa: E402
from ocr_server.paths import REPO_ROOT  # noqa: E402

from ppocr_steps.params import PARAM_RANGES, OcrParams  # noqa: E402

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "client" / "README.md"]
NAMES = [f.name for f in fields(OcrParams)]


def documented_rows(path: Path) -> list[dict[str, str]]:
    """Rows of every markdown table whose header has `parameter` and `default` columns, by column name."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
        elif not set("".join(cells)) <= set("-: ") and {"parameter", "default"} <= set(header):
            rows.append(dict(zip(header, cells, strict=False)))
    return rows


def same_value(documented: str, served: str) -> bool:
    documented = documented.strip("`").lower()
    try:
        return math.isclose(float(documented), float(served))
    except ValueError:
        return documented == served.lower()


def allowed_text(name: str) -> str:
    """PARAM_RANGES written as the README writes it: 32–4096, (0, 1), [0, 1], `min`, `max`, bool."""
    if name in ("use_textline_orientation", "use_doc_orientation_classify"):
        return "bool"
    if name == "use_doc_unwarping":
        return "false only"
    spec = PARAM_RANGES[name]
    if all(isinstance(v, str) for v in spec):
        return ", ".join(f"`{v}`" for v in spec)
    lo, hi, inc_lo, inc_hi = spec
    if isinstance(lo, int) and isinstance(hi, int) and inc_lo and inc_hi:
        return f"{lo}–{hi}"
    return f"{'[' if inc_lo else '('}{lo:g}, {hi:g}{']' if inc_hi else ')'}"


@pytest.fixture(scope="module")
def served() -> dict[str, str]:
    defaults = request_defaults(effective_configs("cpu", default_model_set()))
    assert request_defaults(effective_configs("gpu", default_model_set())) == defaults, "targets disagree"
    return defaults


def test_every_documented_default_is_the_served_one(served: dict[str, str]) -> None:
    documented = {path: [r for r in documented_rows(path) if r["parameter"].strip("`") in NAMES] for path in DOCS}
    readme = {r["parameter"].strip("`") for r in documented[REPO_ROOT / "README.md"]}
    assert readme == set(NAMES), f"README's parameter table misses {set(NAMES) - readme}"
    wrong = [f"{path.relative_to(REPO_ROOT)}: {row['parameter']} documented {row['default']}, served "
             f"{served[row['parameter'].strip('`')]}"
             for path, rows in documented.items() for row in rows
             if not same_value(row["default"], served[row["parameter"].strip("`")])]
    assert not wrong, "\n".join(wrong)


def test_documented_ranges_are_the_enforced_ones() -> None:
    for row in documented_rows(REPO_ROOT / "README.md"):
        name = row["parameter"].strip("`")
        if name in NAMES and "allowed" in row:
            assert row["allowed"] == allowed_text(name), name


def test_serve_help_shows_the_served_defaults(served: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        serve.parse_args(["--help"])
    shown = dict(re.findall(r"^\s+(\w+) = (\S+)$", capsys.readouterr().out, re.M))
    assert shown == served
    assert set(shown) == set(NAMES)
