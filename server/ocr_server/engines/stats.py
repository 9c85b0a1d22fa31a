"""Shapes the CPU pipeline sends to det/cls/rec, computed with the pipeline's own functions.

Used to derive the opt shapes (per-dimension median over the dev split) and, in the tests, to check
that the profiles cover the dev split and synthetic extreme pages. Needs numpy, OpenCV and the
`ppocr_steps` package (python_backend/), imported lazily; server settings are read from the Python
steps' config.pbtxt `parameters`, so a change there is seen here.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_server import pbtxt
from ocr_server.engines.layout import repo_root
from ocr_server.engines.profiles import Profiles

__all__ = ["ShapeSample", "step_parameters", "repository_step_parameters", "pipeline_settings", "dev_set_shapes",
           "extreme_shapes",
           "median_shape", "uncovered"]

@dataclass(frozen=True)
class ShapeSample:
    model: str
    shape: tuple[int, ...]
    source: str = ""


@dataclass
class _Ctx:
    settings: Any
    defaults: Any
    cls_batch: int
    rec_batch: int
    mods: dict[str, Any] = field(default_factory=dict)


def step_parameters(root: Path | None = None, overrides: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """All `parameters` of python_backend/models/*/config.pbtxt merged into {key: value}.

    `overrides` ({step: {key: value}}, e.g. Profiles.step_parameters) are applied on top, as the GPU
    target's repository assembly does.
    """
    root = root or repo_root()
    params: dict[str, str] = {}
    for cfg in sorted((root / "python_backend" / "models").glob("*/config.pbtxt")):
        params.update(pbtxt.parameters(pbtxt.load(cfg)))
        params.update((overrides or {}).get(cfg.parent.name, {}))
    return params


def repository_step_parameters(repository: Path) -> dict[str, str]:
    """The Python steps' `parameters` of an assembled model repository (what the server will use)."""
    params: dict[str, str] = {}
    for step in ("det_preprocess", "det_postprocess", "rec_pipeline"):
        cfg = Path(repository) / step / "config.pbtxt"
        if cfg.exists():
            params.update(pbtxt.parameters(pbtxt.load(cfg)))
    return params


def _import_steps() -> dict[str, Any]:
    try:
        from ppocr_steps import det_preprocess, recognize, settings  # noqa: PLC0415
        from ppocr_steps.params import OcrParams  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeError(f"the pipeline package ppocr_steps is not importable ({exc}); install "
                           "python_backend/ (pip install -e python_backend) with numpy and opencv") from exc
    return {"det": det_preprocess, "rec": recognize, "settings": settings, "OcrParams": OcrParams}


def pipeline_settings(root: Path | None = None, overrides: dict[str, dict[str, str]] | None = None,
                      params: dict[str, str] | None = None) -> _Ctx:
    """PipelineSettings + per-request defaults as the server would build them from the step configs.

    `overrides`: per-step parameter overrides (the GPU target's `step_parameters` in profiles.json);
    `params`: use these merged parameters instead (e.g. from an assembled repository).
    """
    mods = _import_steps()
    params = params if params is not None else step_parameters(root, overrides)
    s = mods["settings"].pipeline_settings_from_parameters(params)
    defaults = mods["settings"].defaults_from_parameters(params)
    return _Ctx(s, defaults, s.cls_batch_size, s.rec_batch_size, mods)


def _det_shape(ctx: _Ctx, sizes: list[tuple[int, int]], limit_side_len: int, limit_type: str) -> tuple[int, ...]:
    """[N,H,W,3] (uint8 NHWC) that det_preprocess sends for images of `sizes` (build_det_batch's size rule)."""
    import numpy as np  # noqa: PLC0415
    det = ctx.mods["det"]
    sources = [det.prepare_source(np.zeros((h, w, 3), np.uint8), ctx.settings)[0] for h, w in sizes]
    # shapes only: build_det_batch's size rule, without resizing
    shapes = [det.det_input_size(src.shape[0], src.shape[1], limit_side_len, limit_type, ctx.settings)
              for src in sources]
    return (len(sizes), max(s[0] for s in shapes), max(s[1] for s in shapes), 3)


def _rec_shapes(ctx: _Ctx, ratios: list[float], source: str) -> Iterable[ShapeSample]:
    s = ctx.settings
    for start in range(0, len(ratios), ctx.cls_batch):
        n = len(ratios[start:start + ctx.cls_batch])
        yield ShapeSample("cls_model", (n, *ctx.mods["rec"].CLS_SHAPE), source)
    for idx, width in ctx.mods["rec"].rec_batch_plan(ratios, ctx.rec_batch, s.rec_image_height, s.rec_min_width,
                                                     s.rec_max_width, s.rec_width_multiple,
                                                     s.rec_batch_total_width):
        yield ShapeSample("rec_model", (len(idx), s.rec_image_height, int(width), 3), source)


def _crop_ratio(poly: list[list[float]]) -> float | None:
    import numpy as np  # noqa: PLC0415
    p = np.asarray(poly, dtype=np.float64)
    if p.shape != (4, 2):
        return None
    w = max(int(max(np.linalg.norm(p[0] - p[1]), np.linalg.norm(p[2] - p[3]))), 1)
    h = max(int(max(np.linalg.norm(p[0] - p[3]), np.linalg.norm(p[1] - p[2]))), 1)
    if h / w >= 1.5:  # the pipeline turns tall crops by 90° (crops.VERTICAL_RATIO)
        w, h = h, w
    return w / h


ORI_SHAPE = (224, 224, 3)  # ppocr_steps.orientation.ORI_SIZE, NHWC


def dev_set_shapes(evaldata: Path, ctx: _Ctx | None = None) -> list[ShapeSample]:
    """Every det/cls/rec call shape for the dev split, one image per request, default parameters.

    Label polygons stand in for detected boxes (the crops' aspect ratios are what matter).
    """
    ctx = ctx or pipeline_settings()
    d = ctx.defaults
    out: list[ShapeSample] = []
    for labels in sorted(Path(evaldata).glob("*/labels.jsonl")):
        for line in labels.read_text().splitlines():
            rec = json.loads(line)
            src = f"{labels.parent.name}/{rec['image']}"
            out.append(ShapeSample("det_model", _det_shape(ctx, [(rec["height"], rec["width"])],
                                                           d.limit_side_len, d.limit_type), src))
            out.append(ShapeSample("ori_model", (1, *ORI_SHAPE), src))  # one page per request
            ratios = [r for r in (_crop_ratio(ln["poly"]) for ln in rec["lines"]) if r is not None]
            out.extend(_rec_shapes(ctx, ratios, src))
    return out


def extreme_shapes(ctx: _Ctx | None = None) -> list[ShapeSample]:
    """Synthetic worst cases the pipeline accepts: the largest det input, the most images, a very long line."""
    ctx = ctx or pipeline_settings()
    s = ctx.settings
    big = s.max_side_limit
    n_max = s.max_images_per_request
    out = [
        ShapeSample("det_model", _det_shape(ctx, [(big, big)], 4096, "min"), "square page, limit_side_len 4096 min"),
        ShapeSample("det_model", _det_shape(ctx, [(big, big)], 4096, "max"), "square page, limit_side_len 4096 max"),
        ShapeSample("det_model", _det_shape(ctx, [(40, big)], ctx.defaults.limit_side_len, ctx.defaults.limit_type),
                    "thin strip (letterboxed), default limits"),
        ShapeSample("det_model", _det_shape(ctx, [(big, big // 8)], 4096, "min"), "tall strip, limit 4096 min"),
        ShapeSample("det_model", _det_shape(ctx, [(big, big)] * n_max, 4096, "min"),
                    f"{n_max} large pages in one request (max_images_per_request)"),
        ShapeSample("det_model", _det_shape(ctx, [(s.min_image_side, s.min_image_side)], 32, "max"),
                    "smallest accepted image"),
    ]
    ratios = [200.0] * (ctx.rec_batch + 3) + [0.3, 1.0, 5.0]
    out.extend(_rec_shapes(ctx, ratios, "very long lines (ratio 200) and tiny crops"))
    out.append(ShapeSample("ori_model", (min(n_max, s.ori_batch_size), *ORI_SHAPE),
                           f"{n_max} pages in one request (max_images_per_request, ori_batch_size)"))
    return out


def median_shape(samples: Iterable[ShapeSample], model: str, multiple: int = 1,
                 axes: Sequence[int] = (2, 3)) -> tuple[int, ...]:
    """Per-dimension median (rounded to `multiple` on `axes`, the H and W axes) of a model's call shapes."""
    import numpy as np  # noqa: PLC0415
    arr = np.asarray([x.shape for x in samples if x.model == model], dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"no samples for {model}")
    med = np.median(arr, axis=0)
    out = [max(1, int(round(v))) for v in med]
    if multiple > 1:
        for i in axes:
            out[i] = max(multiple, int(round(med[i] / multiple)) * multiple)
    return tuple(out)


def uncovered(samples: Iterable[ShapeSample], profiles: Profiles) -> list[str]:
    """Reasons for every sample outside its model's profile (empty list: all covered)."""
    return [f"{profiles[x.model].why_not_covered(x.shape)} ({x.source})"
            for x in samples if not profiles[x.model].covers(x.shape)]
