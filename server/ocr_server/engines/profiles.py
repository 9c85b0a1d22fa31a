"""Optimization profiles and shape limits of the GPU target (model_repository/gpu/profiles.json).

One profile per engine. `limits` is what the CPU pipeline must clamp to so that every shape it
sends lies inside the profiles; `validate()` checks that the two views agree.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_server.engines.layout import RUNTIME_MODELS, default_profiles_path

__all__ = ["ModelProfile", "Profiles", "ProfileError", "load_profiles", "shape_spec"]

Shape = tuple[int, ...]


class ProfileError(ValueError):
    """profiles.json is malformed or inconsistent (the message says which entry and how to fix it)."""


def shape_spec(shape: Sequence[int]) -> str:
    """trtexec shape syntax: (1, 3, 48, 192) -> '1x3x48x192'."""
    return "x".join(str(int(d)) for d in shape)


DTYPES = ("float32", "uint8")
LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class ModelProfile:
    """min/opt/max input shapes (batch first, in `layout`) of one runtime model, its input type and outputs."""

    model: str
    onnx: str
    input: str
    outputs: tuple[str, ...]
    min: Shape
    opt: Shape
    max: Shape
    dtype: str = "float32"   # numpy name of the input's element type
    layout: str = "NCHW"     # axis letters of the input shape

    @property
    def max_batch(self) -> int:
        return self.max[0]

    def axis(self, letter: str) -> int:
        """Index of axis `letter` (N, C, H or W) in this profile's shapes."""
        return self.layout.index(letter)

    def dim(self, shape: Sequence[int], letter: str) -> int:
        """`shape`'s size along axis `letter`: profile.dim(profile.max, "W")."""
        return int(shape[self.axis(letter)])

    def covers(self, shape: Sequence[int]) -> bool:
        """True when `shape` (batch first) lies inside [min, max] in every dimension."""
        return len(shape) == len(self.min) and all(lo <= int(d) <= hi for d, lo, hi in
                                                    zip(shape, self.min, self.max, strict=True))

    def why_not_covered(self, shape: Sequence[int]) -> str:
        """Human-readable reason `shape` is outside the profile ('' when it is inside)."""
        if len(shape) != len(self.min):
            return f"{self.model}: rank {len(shape)} != profile rank {len(self.min)}"
        bad = [f"dim {i} = {d} not in [{lo}, {hi}]" for i, (d, lo, hi) in
               enumerate(zip(shape, self.min, self.max, strict=True)) if not lo <= int(d) <= hi]
        return f"{self.model} {self.input} {shape_spec(shape)}: " + "; ".join(bad) if bad else ""

    def as_dict(self) -> dict[str, Any]:
        return {"input": self.input, "dtype": self.dtype, "layout": self.layout, "min": list(self.min),
                "opt": list(self.opt), "max": list(self.max)}


@dataclass(frozen=True)
class Profiles:
    """All profiles + limits, as loaded from profiles.json."""

    models: dict[str, ModelProfile]
    limits: dict[str, int]
    step_parameters: dict[str, dict[str, str]]   # python-step overrides of the GPU target
    path: Path
    sha256: str
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def __getitem__(self, model: str) -> ModelProfile:
        return self.models[model]

    def step_overrides(self) -> list[str]:
        """The python-step overrides as `MODEL.KEY=VALUE` (assemble_repository.py --param syntax)."""
        return [f"{model}.{key}={value}" for model, kv in self.step_parameters.items() for key, value in kv.items()]

    def validate(self) -> None:
        """Raise ProfileError unless min <= opt <= max, ranks agree and `limits` match the profiles."""
        missing = set(RUNTIME_MODELS) - set(self.models)
        if missing:
            raise ProfileError(f"{self.path}: no profile for {sorted(missing)}")
        for p in self.models.values():
            if p.dtype not in DTYPES or p.layout not in LAYOUTS or not p.outputs:
                raise ProfileError(f"{self.path}: {p.model} needs dtype in {DTYPES}, layout in {LAYOUTS} and "
                                   f"outputs, got {p.dtype!r}, {p.layout!r}, {list(p.outputs)}")
            if not len(p.min) == len(p.opt) == len(p.max) == 4:
                raise ProfileError(f"{self.path}: {p.model} min/opt/max must all be rank 4 ({p.layout})")
            if not p.dim(p.min, "C") == p.dim(p.max, "C") == 3:
                raise ProfileError(f"{self.path}: {p.model} has 3 channels (axis C of {p.layout})")
            for i, (lo, mid, hi) in enumerate(zip(p.min, p.opt, p.max, strict=True)):
                if not 1 <= lo <= mid <= hi:
                    raise ProfileError(f"{self.path}: {p.model} dim {i}: need 1 <= min <= opt <= max, "
                                       f"got {lo}, {mid}, {hi}")
        lim = self.limits
        det, cls, rec = self.models["det_model"], self.models["cls_model"], self.models["rec_model"]
        expect = {
            "det_max_batch": det.max_batch, "det_min_side": min(det.dim(det.min, "H"), det.dim(det.min, "W")),
            "det_max_side": max(det.dim(det.max, "H"), det.dim(det.max, "W")),
            "cls_max_batch": cls.max_batch, "cls_height": cls.dim(cls.max, "H"), "cls_width": cls.dim(cls.max, "W"),
            "rec_max_batch": rec.max_batch, "rec_height": rec.dim(rec.max, "H"), "rec_min_width": rec.dim(rec.min, "W"),
            "rec_max_width": rec.dim(rec.max, "W"),
            "ori_max_batch": self.models["ori_model"].max_batch,
        }
        for key, value in expect.items():
            if lim.get(key) != value:
                raise ProfileError(f"{self.path}: limits.{key} = {lim.get(key)} but the profiles say {value}; "
                                   "edit both together")
        side_min, side_max = det.dim(det.min, "H"), det.dim(det.max, "H")
        if (side_min, side_max) != (det.dim(det.min, "W"), det.dim(det.max, "W")):
            raise ProfileError(f"{self.path}: det_model H and W ranges must be equal (portrait and landscape)")
        mult = lim.get("det_side_multiple", 32)
        if side_max % mult or side_min % mult:
            raise ProfileError(f"{self.path}: det_model side limits must be multiples of {mult}")
        if any(cls.dim(cls.min, a) != cls.dim(cls.max, a) for a in "HW"):
            raise ProfileError(f"{self.path}: cls_model H and W are fixed (min == max)")
        if rec.dim(rec.min, "H") != rec.dim(rec.max, "H"):
            raise ProfileError(f"{self.path}: rec_model height is fixed (min == max)")


def load_profiles(path: Path | None = None) -> Profiles:
    """Read and validate profiles.json (default model_repository/gpu/profiles.json)."""
    path = Path(path) if path else default_profiles_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ProfileError(f"{path} not found: it holds the GPU shape limits (model_repository/gpu/)") from exc
    raw = json.loads(data)
    models = {}
    for name, m in raw.get("models", {}).items():
        try:
            models[name] = ModelProfile(name, m["onnx"], m["input"], tuple(m["outputs"]), tuple(m["min"]),
                                        tuple(m["opt"]), tuple(m["max"]), m.get("dtype", "float32"),
                                        m.get("layout", "NCHW"))
        except KeyError as exc:
            raise ProfileError(f"{path}: models.{name} lacks {exc.args[0]!r}") from exc
    steps = {model: {k: str(v) for k, v in kv.items()} for model, kv in raw.get("step_parameters", {}).items()
             if isinstance(kv, dict)}
    profiles = Profiles(models, dict(raw.get("limits", {})), steps, path, hashlib.sha256(data).hexdigest(), raw)
    profiles.validate()
    return profiles
