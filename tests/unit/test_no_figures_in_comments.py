"""Comments and docstrings say why in words (figures: docs/benchmarks.md, CHANGELOG.md); the README stays short."""
from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("server", "python_backend", "model_repository", "ensemble", "client", "scripts")
_NUM = r"\d+(?:\.\d+)?"
# A number with a unit of time, share or throughput, a speed-up factor, or a before -> after pair.
MEASUREMENT = re.compile(
    rf"{_NUM}\s*(?:ms|µs|%|img/s|images/s|req/s|rps|x faster|× faster)(?![A-Za-z])"
    rf"|{_NUM}[x×](?!\w)"
    rf"|{_NUM}\s*(?:->|→)\s*{_NUM}"
)


def prose(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every comment and docstring line of a .py or .pbtxt file."""
    source = path.read_text(encoding="utf-8")
    if path.suffix == ".pbtxt":
        for number, line in enumerate(source.splitlines(), 1):
            if "#" in line:
                yield number, line[line.index("#"):]
        return
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    for offset, line in enumerate(first.value.value.splitlines()):
                        yield first.lineno + offset, line


def findings(paths: list[Path]) -> list[str]:
    return [f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{number}: {text.strip()}"
            for path in paths for number, text in prose(path) if MEASUREMENT.search(text)]


def scanned_files() -> list[Path]:
    return sorted(p for d in SCANNED for p in (ROOT / d).rglob("*")
                  if p.suffix in (".py", ".pbtxt") and p.is_file() and ".venv" not in p.parts)


def test_no_comment_or_docstring_quotes_a_measurement() -> None:
    files = scanned_files()
    assert len(files) > 50  # the scan reaches the tree
    assert findings(files) == []


@pytest.mark.parametrize("line", [
    "# decoding 5.3-6.3 -> 3.4-3.5 ms/image",
    "# 20-28 % less CPU time",
    "# about 2.1x faster than before",
    "# it cost ~9 ms/image there",
    "# 120 img/s at concurrency 8",
])
def test_a_planted_measurement_is_found(tmp_path: Path, line: str) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(f"x = 1\n{line}\n", encoding="utf-8")
    assert findings([planted]) == [f"{planted}:2: {line}"]


def test_docstrings_and_pbtxt_comments_are_scanned(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('def f() -> None:\n    """Fast.\n\n    0.611 -> 0.626 on the dev split."""\n', encoding="utf-8")
    config = tmp_path / "config.pbtxt"
    config.write_text('name: "m"  # 42 % of the time\nmax_batch_size: 32\n', encoding="utf-8")
    assert len(findings([module, config])) == 2


def test_configuration_values_and_formulas_pass(tmp_path: Path) -> None:
    clean = tmp_path / "clean.py"
    clean.write_text('TIMEOUT_MS = 500  # the limit clients see; a 1x1 Conv, 2 x max_side_limit\n'
                     'log.warning("%s is %d", a, b)\n', encoding="utf-8")
    assert findings([clean]) == []


def test_readme_stays_short() -> None:
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= 200, f"README.md has {lines} lines; details belong in docs/"
