"""Benchmark inputs and accuracy: image lists, the matching ground truth, predictions, the scorer."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["IMAGE_EXTENSIONS", "BenchImage", "find_images", "labelled_records", "load_images", "pick_evenly",
           "run_scorer", "write_ground_truth", "write_predictions"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
LABELS_FILE = "labels.jsonl"


@dataclass(frozen=True)
class BenchImage:
    path: Path
    key: str          # "<subset>/<image>" as ocr_eval.py keys ground truth (or the path relative to the root)
    labels: Path | None  # the labels.jsonl that describes this image, if any
    data: bytes = b""


def labelled_records(evaldata: Path, subsets: Sequence[str] | None = None,
                     per_subset: int | None = None) -> list[tuple[str, Path, dict]]:
    """(subset, image path, label record) for the first ``per_subset`` records (all when None) of every
    ``<subset>/labels.jsonl`` under ``evaldata``, of the named ``subsets`` only when given."""
    items = []
    for labels in sorted(evaldata.glob(f"*/{LABELS_FILE}")):
        if subsets and labels.parent.name not in subsets:
            continue
        records = [json.loads(line) for line in labels.read_text(encoding="utf-8").splitlines()]
        items += [(labels.parent.name, labels.parent / rec["image"], rec) for rec in records[:per_subset]]
    return items


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive), sorted by their relative path; ``root`` may be one file."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise SystemExit(f"--images {root}: no such file or folder")
    return sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda p: p.relative_to(root).parts)


def pick_evenly(items: Sequence[Any], n: int | None) -> list[Any]:
    """``n`` items spread evenly over ``items`` (keeping their order), so that every subset of a sorted
    dataset tree is represented; all of them when ``n`` is None or not smaller."""
    if n is None or n >= len(items):
        return list(items)
    if n <= 0:
        return []
    return [items[(i * len(items)) // n] for i in range(n)]


def _labels_for(path: Path, root: Path) -> tuple[str, Path | None]:
    """(ground-truth key, labels.jsonl) for an image: the nearest folder at or below ``root`` holding a
    labels.jsonl names the subset, and the key is ``<subset>/<path inside it>``."""
    stop = root if root.is_dir() else root.parent
    folder = path.parent
    while True:
        if (folder / LABELS_FILE).is_file():
            return f"{folder.name}/{path.relative_to(folder).as_posix()}", folder / LABELS_FILE
        if folder == stop or folder.parent == folder:
            break
        folder = folder.parent
    rel = path.relative_to(stop).as_posix()
    return rel, None


def load_images(root: Path, max_images: int | None) -> list[BenchImage]:
    """The benchmark's images, read into memory (disk reads are not timed)."""
    paths = pick_evenly(find_images(root), max_images)
    if not paths:
        raise SystemExit(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {root}")
    out = []
    for p in paths:
        key, labels = _labels_for(p, root)
        out.append(BenchImage(p, key, labels, p.read_bytes()))
    return out


def write_ground_truth(images: Iterable[BenchImage], out_dir: Path) -> Path | None:
    """``out_dir/<subset>/labels.jsonl`` holding only the benchmarked images' labels, so that images left
    out by ``--max-images`` are not scored as missed. None when no image has labels."""
    wanted: dict[Path, dict[str, str]] = {}
    for im in images:
        if im.labels is not None:
            subset, name = im.key.split("/", 1)
            wanted.setdefault(im.labels, {})[name] = subset
    if not wanted:
        return None
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for labels, names in wanted.items():
        subset = next(iter(names.values()))
        target = out_dir / subset / LABELS_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        for raw in labels.read_text(encoding="utf-8").splitlines():
            if raw.strip() and json.loads(raw).get("image") in names:
                kept.append(raw)
        with target.open("a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in kept))
    return out_dir


def write_predictions(path: Path, keys: Sequence[str], lines_per_image: Mapping[str, list[dict[str, Any]]]) -> None:
    """ocr_eval.py predictions: one ``{"image": key, "lines": [{"poly", "text", "score"}, ...]}`` per image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for key in keys:
            if key in lines_per_image:
                f.write(json.dumps({"image": key, "lines": lines_per_image[key]}, ensure_ascii=False) + "\n")


def run_scorer(scorer: Path, gt: Path, pred: Path, timeout: float = 600.0) -> dict[str, Any]:
    """Run ``ocr_eval.py --json`` (with this interpreter: it needs shapely) and return its JSON."""
    cmd = [sys.executable, str(scorer), "--gt", str(gt), "--pred", str(pred), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)
