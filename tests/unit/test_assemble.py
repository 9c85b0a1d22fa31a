"""ocr_server.pbtxt (the one config.pbtxt reader/writer) and the parameter layers of repository assembly."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tritonclient.grpc.model_config_pb2")

from ocr_server import assemble, pbtxt  # noqa: E402
from ocr_server.paths import REPO_ROOT  # noqa: E402

CONFIGS = [path for pattern in ("ensemble/*", "python_backend/models/*", "model_repository/*/*")
           for path in sorted(REPO_ROOT.glob(f"{pattern}/config.pbtxt"))]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_config_round_trips(path: Path) -> None:
    config = pbtxt.load(path)
    assert pbtxt.parse(pbtxt.dump(config)) == config


def test_malformed_config_is_refused_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "config.pbtxt"
    bad.write_text('name: "x"\nmax_batch: 4\n')  # misspelt field
    with pytest.raises(ValueError, match=str(bad)):
        pbtxt.load(bad)


def test_set_parameters_replaces_values_and_refuses_unknown_keys() -> None:
    config = pbtxt.load(REPO_ROOT / "python_backend" / "models" / "rec_pipeline" / "config.pbtxt")
    pbtxt.set_parameters(config, {"rec_batch_size": "8"})
    assert pbtxt.parameters(config)["rec_batch_size"] == "8"
    with pytest.raises(KeyError, match="rec_batch_sise"):
        pbtxt.set_parameters(config, {"rec_batch_sise": "8"})


def test_layers_apply_in_order_manifest_profiles_param(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assemble, "manifest_set", lambda name: {"config": {"rec_pipeline.rec_min_width": "64",
                                                                          "rec_pipeline.rec_batch_size": "4"}})
    cpu = assemble.effective_configs("cpu", "v4", {"rec_pipeline": {"rec_batch_size": "2"}})
    rec = pbtxt.parameters(cpu["rec_pipeline"])
    assert (rec["rec_min_width"], rec["rec_batch_size"]) == ("64", "2")  # --param wins over the manifest
    gpu = pbtxt.parameters(assemble.effective_configs("gpu", "v4", {})["rec_pipeline"])
    assert (gpu["rec_min_width"], gpu["rec_batch_size"]) == ("64", "64")  # profiles.json over the manifest


def test_unknown_param_names_the_model_and_key() -> None:
    with pytest.raises(SystemExit, match="rec_batch_sise"):
        assemble.effective_configs("cpu", "v4", {"rec_pipeline": {"rec_batch_sise": "2"}})
    with pytest.raises(SystemExit, match="rec_pipelin"):
        assemble.effective_configs("cpu", "v4", {"rec_pipelin": {"rec_batch_size": "2"}})


def test_assemble_prints_the_effective_parameters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models" / "v4"
    models.mkdir(parents=True)
    for name in ("det.onnx", "cls.onnx", "rec.onnx", "ori.onnx", "dict.txt", "ori_labels.txt"):
        (models / name).write_bytes(b"")
    out = tmp_path / "repo"
    assert assemble.main(["--model-set", "v4", "--out", str(out), "--models-dir", str(tmp_path / "models"),
                          "--param", "det_preprocess.default_limit_side_len=960"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "det_preprocess.default_limit_side_len = 960" in printed
    assert "rec_pipeline.rec_batch_size = 32" in printed
    assert "det_model.onnx_file = model.onnx" in printed
    served = pbtxt.load_repository(out)
    assert set(served) == {"ocr", "det_preprocess", "det_postprocess", "rec_pipeline", "det_model", "cls_model",
                           "rec_model", "ori_model"}
    assert pbtxt.parameters(served["det_preprocess"])["default_limit_side_len"] == "960"
