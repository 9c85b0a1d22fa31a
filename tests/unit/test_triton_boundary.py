"""The Triton boundary of the Python models, run against a fake `triton_python_backend_utils`.

model.py files are loaded as Triton loads them (initialize with the JSON model config built from the
real config.pbtxt, then execute on a list of requests): one bad request never fails the others, the
error code says what the client should do (INVALID_ARG: fix the request; UNAVAILABLE: retry; INTERNAL:
a bug), BLS calls stay within the callee's batch, and the CPU runtime model batches requests of the
same shape and answers each with its own rows.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import cv2
import fake_pb_utils
import numpy as np
import pytest
from served import served_defaults

pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import json_format  # noqa: E402
from ocr_server import pbtxt  # noqa: E402
from ocr_server.assemble import effective_configs  # noqa: E402

from ppocr_steps.det_preprocess import ImageInfo  # noqa: E402
from ppocr_steps.params import params_to_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STEPS = ROOT / "python_backend" / "models"
CPU = ROOT / "model_repository" / "cpu"
TritonError = fake_pb_utils.TritonError


@pytest.fixture
def pb(monkeypatch: pytest.MonkeyPatch) -> Any:
    return fake_pb_utils.install(monkeypatch)


def load_model(pb: Any, model_py: Path, config_path: Path, version_dir: Path, **parameters: str) -> Any:
    """model.py's TritonPythonModel, initialised with config_path's config as assembled (the limits it
    shares with other models copied in: ocr_server.assemble.SHARED_LIMITS), `parameters` changed."""
    # v4: its manifest defaults are the raw config.pbtxt values that tests/unit/served.py reads
    config = effective_configs("cpu", "v4")[pbtxt.load(config_path).name]
    pbtxt.set_parameters(config, parameters)
    spec = importlib.util.spec_from_file_location(f"model_{config.name}", model_py)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    model = module.TritonPythonModel()
    model.initialize({"model_config": json_format.MessageToJson(config, preserving_proto_field_name=True),
                      "model_repository": str(version_dir.parent), "model_version": version_dir.name,
                      "model_name": config.name})
    return model


def code(response: Any) -> int | None:
    return response.error().code() if response.has_error() else None


def png(h: int = 120, w: int = 320) -> bytes:
    img = np.full((h, w, 3), 255, np.uint8)
    cv2.putText(img, "ab ab", (10, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (0, 0, 0), 3)
    return cv2.imencode(".png", img)[1].tobytes()


# ----------------------------------------------------------------------------------------- det_preprocess

@pytest.fixture
def det_preprocess(pb: Any, tmp_path: Path) -> Any:
    (tmp_path / "1").mkdir(exist_ok=True)
    (tmp_path / "1" / "ori_labels.txt").write_text("0\n90\n180\n270\n")
    # no ori_model behind this fake stub: page orientation off (its BLS path: tests/integration)
    return load_model(pb, STEPS / "det_preprocess" / "1" / "model.py", STEPS / "det_preprocess" / "config.pbtxt",
                      tmp_path / "1", default_use_doc_orientation_classify="false")


def test_each_request_gets_its_own_error_code(pb: Any, det_preprocess: Any) -> None:
    good = pb.request(image_bytes=np.array([png()], dtype=np.object_))
    garbage = pb.request(image_bytes=np.array([b"not an image"], dtype=np.object_))
    missing = pb.request(box_thresh=np.array([0.5], np.float32))
    out_of_range = pb.request(image_bytes=np.array([png()], dtype=np.object_),
                              box_thresh=np.array([2.0], np.float32))
    responses = det_preprocess.execute([good, garbage, missing, out_of_range, good])
    assert [code(r) for r in responses] == [None, TritonError.INVALID_ARG, TritonError.INVALID_ARG,
                                            TritonError.INVALID_ARG, None]
    assert "image_bytes" in responses[2].error().message()
    assert "'box_thresh'" in responses[3].error().message() and "allowed" in responses[3].error().message()
    assert responses[0].outputs()["det_input"].shape == responses[4].outputs()["det_input"].shape


def test_request_parameters_travel_with_the_request(pb: Any, det_preprocess: Any) -> None:
    from ppocr_steps.params import params_from_json

    blob = np.array([png()], dtype=np.object_)
    plain, tuned = det_preprocess.execute([pb.request(image_bytes=blob),
                                           pb.request(image_bytes=blob, limit_type=np.array([b"max"], np.object_),
                                                      limit_side_len=np.array([320], np.int32))])
    off = {"use_doc_orientation_classify": False}
    assert params_from_json(bytes(plain.outputs()["ocr_params"][0])) == served_defaults(**off)
    assert params_from_json(bytes(tuned.outputs()["ocr_params"][0])) == served_defaults(limit_type="max",
                                                                                         limit_side_len=320, **off)


def test_a_bug_is_internal_and_fails_only_its_request(pb: Any, det_preprocess: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = det_preprocess.__class__.__dict__["_handle"]

    def handle(self: Any, request: Any) -> Any:
        if pb.get_input_tensor_by_name(request, "thresh") is not None:
            raise ZeroDivisionError("boom")
        return real(self, request)

    monkeypatch.setattr(det_preprocess.__class__, "_handle", handle)
    blob = np.array([png()], dtype=np.object_)
    responses = det_preprocess.execute([pb.request(image_bytes=blob, thresh=np.array([0.3], np.float32)),
                                        pb.request(image_bytes=blob)])
    assert [code(r) for r in responses] == [TritonError.INTERNAL, None]
    assert "ZeroDivisionError: boom" in responses[0].error().message()


# ----------------------------------------------------------------------------------------- rec_pipeline

LABELS = "a\nb\n"   # CTC classes: 0 blank, 1 'a', 2 'b', 3 ' '


def input_array(request: Any, name: str) -> np.ndarray:
    tensor = fake_pb_utils.get_input_tensor_by_name(request, name)
    assert tensor is not None, name
    return tensor.as_numpy()


def fake_cls(request: Any) -> Any:
    batch = input_array(request, "cls_input")
    assert batch.dtype == np.uint8 and batch.shape[1:] == (48, 192, 3)
    probs = np.tile(np.array([[0.99, 0.01]], np.float32), (len(batch), 1))  # every crop upright
    return fake_pb_utils.InferenceResponse([fake_pb_utils.Tensor("cls_probs", probs)])


def fake_rec(request: Any) -> Any:
    batch = input_array(request, "rec_input")
    assert batch.dtype == np.uint8 and batch.shape[1] == 48
    steps = batch.shape[2] // 8
    ids = np.zeros((len(batch), steps), np.int32)
    ids[:, :2] = [1, 2]   # reads "ab"
    probs = np.full(ids.shape, 0.9, np.float32)
    return fake_pb_utils.InferenceResponse([fake_pb_utils.Tensor("rec_char_ids", ids),
                                            fake_pb_utils.Tensor("rec_char_probs", probs)])


def rec_request(pb: Any, n_boxes: int, drop: str = "") -> Any:
    """A rec_pipeline request: one 400x600 image and `n_boxes` boxes of growing width."""
    image = np.full((400, 600, 3), 255, np.uint8)
    info = ImageInfo(400, 600, 400, 600, 0, 400, 600, 1, 1).to_row()
    boxes = np.array([[[10, 10 + 9 * i % 380], [40 + 13 * i % 550, 10 + 9 * i % 380],
                       [40 + 13 * i % 550, 20 + 9 * i % 380], [10, 20 + 9 * i % 380]] for i in range(n_boxes)],
                     np.float32).reshape(-1, 4, 2)  # [0, 4, 2] without boxes, as Triton delivers it
    inputs = {"images": image[None], "image_info": np.array([info], np.float32), "boxes": boxes,
              "box_image_index": np.zeros(n_boxes, np.int32),
              "ocr_params": np.array([params_to_json(served_defaults())], dtype=np.object_)}
    return pb.request(**{k: v for k, v in inputs.items() if k != drop})


@pytest.fixture
def rec_dir(tmp_path: Path) -> Path:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "dict.txt").write_text(LABELS)
    return tmp_path / "1"


def rec_pipeline(pb: Any, rec_dir: Path, **parameters: str) -> Any:
    return load_model(pb, STEPS / "rec_pipeline" / "1" / "model.py", STEPS / "rec_pipeline" / "config.pbtxt",
                      rec_dir, **parameters)


def rows_per_call(pb: Any, model: str) -> list[int]:
    return [len(pb.get_input_tensor_by_name(c, c.inputs()[0].name()).as_numpy()) for c in pb.calls
            if c.model_name == model]


@pytest.mark.parametrize("cls_batch,rec_batch", [("16", "32"), ("4", "3")])
def test_bls_calls_stay_within_the_batch_sizes(pb: Any, rec_dir: Path, cls_batch: str, rec_batch: str) -> None:
    pb.bls.update(cls_model=fake_cls, rec_model=fake_rec)
    model = rec_pipeline(pb, rec_dir, cls_batch_size=cls_batch, rec_batch_size=rec_batch)
    (response,) = model.execute([rec_request(pb, 40)])
    out = response.outputs()
    assert [t.decode() for t in out["texts"]] == ["ab"] * 40
    assert out["polys"].shape == (40, 4, 2) and not out["flipped"].any()
    cls_rows, rec_rows = rows_per_call(pb, "cls_model"), rows_per_call(pb, "rec_model")
    assert sum(cls_rows) == 40 and max(cls_rows) <= int(cls_batch) and len(cls_rows) >= -(-40 // int(cls_batch))
    assert sum(rec_rows) == 40 and max(rec_rows) <= int(rec_batch)


def test_bls_model_chunks_a_large_batch_and_keeps_row_order(pb: Any) -> None:
    from ppocr_steps import triton_adapter as ta

    def echo(request: Any) -> Any:
        x = pb.get_input_tensor_by_name(request, "x").as_numpy()
        return pb.InferenceResponse([pb.Tensor("first", x[:, 0]), pb.Tensor("double", 2 * x[:, 0])])

    pb.bls["m"] = echo
    first, double = ta.BlsModel("m", "x", ["first", "double"], max_batch=4)(np.arange(20).reshape(10, 2))
    assert rows_per_call(pb, "m") == [4, 4, 2]
    assert first.tolist() == list(range(0, 20, 2)) and double.tolist() == list(range(0, 40, 4))
    single = ta.BlsModel("m", "x", ["first"], max_batch=4).submit(np.ones((5, 2)))()
    assert isinstance(single, np.ndarray) and single.tolist() == [1] * 5


def test_callee_errors_become_unavailable_or_internal(pb: Any, rec_dir: Path) -> None:
    pb.bls["rec_model"] = fake_rec   # cls_model is not loaded: "is not ready"
    model = rec_pipeline(pb, rec_dir)
    (unavailable,) = model.execute([rec_request(pb, 3)])
    assert code(unavailable) == TritonError.UNAVAILABLE and "retry" in unavailable.error().message()
    pb.bls["cls_model"] = lambda request: pb.InferenceResponse(error=TritonError("shape mismatch"))
    (internal,) = model.execute([rec_request(pb, 3)])
    assert code(internal) == TritonError.INTERNAL and "cls_model: shape mismatch" in internal.error().message()


def test_a_retry_succeeds_once_the_callee_is_back(pb: Any, rec_dir: Path) -> None:
    """UNAVAILABLE leaves nothing behind: the client's retry of the same request is answered."""
    model = rec_pipeline(pb, rec_dir)
    request = rec_request(pb, 5)
    pb.bls.update(cls_model=fake_cls, rec_model=lambda r: pb.InferenceResponse(
        error=TritonError("Stub process 'rec_model_0_0' is not healthy.")))
    assert [code(r) for r in model.execute([request, rec_request(pb, 0)])] == [TritonError.UNAVAILABLE, None]
    pb.bls["rec_model"] = fake_rec
    (retried,) = model.execute([request])
    assert [t.decode() for t in retried.outputs()["texts"]] == ["ab"] * 5


def test_a_request_without_boxes_input_is_invalid(pb: Any, rec_dir: Path) -> None:
    pb.bls.update(cls_model=fake_cls, rec_model=fake_rec)
    responses = rec_pipeline(pb, rec_dir).execute([rec_request(pb, 2, drop="boxes"), rec_request(pb, 2)])
    assert [code(r) for r in responses] == [TritonError.INVALID_ARG, None]
    assert "'boxes'" in responses[0].error().message()


# ----------------------------------------------------------------------------------------- CPU runtime model

class FakeOrt:
    """Stands in for the onnxruntime session: output 0 = per-row sum, output 1 = the row count of the batch."""

    def __init__(self, fail_width: int = -1) -> None:
        self.input_name, self.output_names, self.path = "rec_input", ["rec_char_ids", "rec_char_probs"], "fake"
        self.batches: list[tuple[int, ...]] = []
        self.fail_width = fail_width

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.batches.append(batch.shape)
        if batch.shape[2] == self.fail_width:
            raise RuntimeError("onnxruntime failed")
        sums = batch.reshape(len(batch), -1).sum(axis=1, dtype=np.int64)
        return [sums.astype(np.int32)[:, None], np.full((len(batch), 1), len(batch), np.float32)]


@pytest.fixture
def runtime(pb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, FakeOrt]:
    from ppocr_steps import onnx_runtime

    fake = FakeOrt(fail_width=24)
    monkeypatch.setattr(onnx_runtime, "load_runtime_model", lambda version_dir, params: fake)
    model = load_model(pb, CPU / "onnx_model.py", CPU / "rec_model" / "config.pbtxt", tmp_path / "1")
    return model, fake


def crops(n: int, width: int, value: int) -> np.ndarray:
    return np.full((n, 48, width, 3), value, np.uint8)


def test_runtime_model_batches_same_shape_requests_and_splits_the_rows(pb: Any, runtime: tuple[Any, FakeOrt]) -> None:
    model, fake = runtime
    requests = [pb.request(rec_input=crops(2, 16, 1)), pb.request(rec_input=crops(1, 32, 2)),
                pb.request(rec_input=crops(3, 16, 3)), pb.request(), pb.request(rec_input=crops(1, 24, 4))]
    responses = model.execute(requests)
    assert fake.batches == [(5, 48, 16, 3), (1, 48, 32, 3), (1, 48, 24, 3)]  # first-seen order, one run per shape
    assert [code(r) for r in responses] == [None, None, None, TritonError.INVALID_ARG, TritonError.INTERNAL]
    per_row = 48 * 3
    assert responses[0].outputs()["rec_char_ids"][:, 0].tolist() == [16 * per_row] * 2
    assert responses[2].outputs()["rec_char_ids"][:, 0].tolist() == [3 * 16 * per_row] * 3
    assert responses[0].outputs()["rec_char_probs"][:, 0].tolist() == [5, 5]   # ran in the batch of 5
    assert responses[1].outputs()["rec_char_ids"][:, 0].tolist() == [2 * 32 * per_row]
    assert "onnxruntime failed" in responses[4].error().message()
    assert "'rec_input'" in responses[3].error().message()
