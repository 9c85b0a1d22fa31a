"""docker/: the Dockerfile fetches only from the NGC registry and the package index, its import checks
match what each stage installs, the entrypoint runs the supervised launcher, and checkov finds nothing
that is not explained by a skip comment (no Docker engine here: these checks are static)."""
from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from iac import checkov_reports, unexplained

dockerfile_parse = pytest.importorskip("dockerfile_parse")
if sys.version_info >= (3, 11):
    import tomllib
else:
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
NGC = "nvcr.io/nvidia/"

# distribution -> the module its import check must import
MODULES = {"numpy": "numpy", "opencv-python-headless": "cv2", "pyclipper": "pyclipper", "tritonclient": "tritonclient",
           "grpcio": "grpc", "protobuf": "google.protobuf", "onnx": "onnx", "onnxruntime": "onnxruntime",
           "ppocr-steps": "ppocr_steps", "ocr-server": "ocr_server", "nvidia-pytriton": "pytriton",
           "prometheus-client": "prometheus_client", "pypdfium2": "pypdfium2", "openvino": "openvino",
           "openvino-telemetry": "openvino_telemetry", "fastapi": "fastapi", "starlette": "starlette",
           "uvicorn": "uvicorn", "httpx": "httpx"}
# modules an NGC base image brings itself
BASE_MODULES = {"nvcr.io/nvidia/tensorrt": {"tensorrt"}, "nvcr.io/nvidia/tritonserver": set()}
# pins that differ from requirements/server.txt because the NGC images run Python 3.10
PY310_PINS = {"onnxruntime", "openvino"}


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[dict] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(\S+)", line)
            assert m, f"{path.name}: {line!r} is not pinned with =="
            pins[m.group(1).lower().replace("_", "-")] = m.group(3)
    return pins


def _stages() -> list[Stage]:
    parser = dockerfile_parse.DockerfileParser(fileobj=DOCKERFILE.open("rb"))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in parser.structure:
        if ins["instruction"] == "ARG" and not stages and "=" in ins["value"]:
            key, value = ins["value"].split("=", 1)
            args[key] = value
        elif ins["instruction"] == "FROM":
            words = ins["value"].split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            stages.append(Stage(words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages)), base))
        elif stages:
            stages[-1].instructions.append(ins)
    return stages


def _commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN step (split at &&, ||, ;, |), each as shell words."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _installed(stage: Stage) -> tuple[dict[str, str], set[str], list[str]]:
    """(pinned distribution -> version, local package distributions, their declared dependencies) of a stage."""
    pins: dict[str, str] = {}
    local: set[str] = set()
    deps: list[str] = []
    for run in stage.values("RUN"):
        for words in _commands(run):
            if words[:4] != ["python3", "-m", "pip", "install"]:
                continue
            rest = iter(words[4:])
            for word in rest:
                if word == "-r":
                    pins.update(_pins(ROOT / next(rest)))
                elif word.startswith("./"):
                    project = tomllib.loads((ROOT / word / "pyproject.toml").read_text())["project"]
                    local.add(_name(project["name"]))
                    deps += project.get("dependencies", [])
                else:
                    raise AssertionError(f"stage {stage.name}: pip installs {word!r}; pin packages in a requirements "
                                         "file (-r) or install a local package (./dir)")
    return pins, local, deps


def _import_check(stage: Stage) -> set[str]:
    for run in stage.values("RUN"):
        for words in _commands(run):
            if words[:2] == ["python3", "-c"] and words[2].startswith("import "):
                return {name.strip() for name in words[2].split(";")[0].removeprefix("import ").split(",")}
    raise AssertionError(f"stage {stage.name} has no python3 -c \"import ...\" check")


STAGES = ["models", "server", "cpu", "engine-builder"]


def _stage(name: str) -> Stage:
    return next(s for s in _stages() if s.name == name)


def test_stages_start_from_ngc_images_of_one_release():
    stages = _stages()
    assert [s.name for s in stages] == STAGES
    images = [s.base for s in stages if s.base not in STAGES]
    assert {i.rsplit(":", 1)[0] for i in images} == {NGC + "tritonserver", NGC + "tensorrt"}
    assert len({i.rsplit(":", 1)[1] for i in images}) == 1, "the images must come from one NGC release"
    for stage in stages:  # files from other stages only come from earlier ones
        for copy in stage.values("COPY"):
            m = re.match(r"--from=(\S+)", copy)
            assert not m or m.group(1) in STAGES[:STAGES.index(stage.name)], copy


def test_no_step_fetches_from_another_host():
    for stage in _stages():
        for ins in stage.instructions:
            value = ins["value"]
            assert ins["instruction"] != "ADD", f"line {ins['startline'] + 1}: use COPY (ADD can fetch URLs)"
            if ins["instruction"] == "RUN":
                assert "://" not in value, f"line {ins['startline'] + 1}: a RUN step names a URL"
                assert not re.search(r"\b(curl|wget|git)\b", value), f"line {ins['startline'] + 1}: downloads"
                assert not re.search(r"(--(extra-)?index-url|--find-links|\s-[if]\s)", value), \
                    f"line {ins['startline'] + 1}: pip must use the default package index only"


def _base_modules(stage: Stage) -> set[str]:
    """Modules a stage gets from its base: the NGC image's own, or all that an earlier stage installed."""
    if stage.base in STAGES:
        parent = _stage(stage.base)
        pins, local, _ = _installed(parent)
        return _base_modules(parent) | {MODULES[d] for d in set(pins) | local}
    return BASE_MODULES[stage.base.rsplit(":", 1)[0]]


@pytest.mark.parametrize("stage", STAGES)
def test_import_check_matches_the_installed_packages(stage):
    st = _stage(stage)
    pins, local, deps = _installed(st)
    installed = set(pins) | local
    unknown = installed - set(MODULES)
    assert not unknown, f"add the import name of {sorted(unknown)} to MODULES"
    for dep in deps:  # nothing a local package needs may float: pinned in the stage's requirements files
        assert _name(dep) in installed, f"{stage}: {dep!r} (a dependency of a local package) is not pinned"
    imported = _import_check(st)
    wanted = {MODULES[d] for d in installed}  # the check must import everything the stage installs ...
    allowed = wanted | _base_modules(st)      # ... and nothing it does not have
    covered = {w for w in wanted if any(i == w or i.startswith(w + ".") for i in imported)}
    stray = {i for i in imported if not any(i == w or i.startswith(w + ".") for w in allowed)}
    assert not stray, f"{stage}: the import check imports {sorted(stray)}, which the stage does not install"
    assert covered == wanted, f"{stage}: the import check misses {sorted(wanted - covered)}"


def test_image_pins_follow_the_server_requirements():
    server = _pins(ROOT / "requirements" / "server.txt")
    for name in ("gpu-image.txt", "gpu-builder.txt", "cpu-image.txt"):
        for dist, version in _pins(ROOT / "requirements" / name).items():
            if dist in PY310_PINS:
                continue
            assert server.get(dist) == version, f"requirements/{name}: {dist}=={version}, server.txt {server.get(dist)}"
    image = _pins(ROOT / "requirements" / "gpu-image.txt")
    assert int(image["numpy"].split(".")[0]) < 2 and image["opencv-python-headless"] == "4.11.0.86", \
        "opencv-python-headless 4.11.0.86 is the last release that supports numpy<2"


def test_entrypoint_runs_the_supervised_launcher():
    server = _stage("server")
    assert json.loads(server.values("ENTRYPOINT")[-1]) == ["/opt/ocr/docker/entrypoint.sh"]
    assert "OCR_TARGET=gpu" in server.values("ENV")[0] and _stage("cpu").values("ENV") == ["OCR_TARGET=cpu"]
    script = "\n".join(line for line in (DOCKER / "entrypoint.sh").read_text().splitlines()
                        if not line.lstrip().startswith("#"))
    commands = [words[words.index("exec"):] for line in script.splitlines() for words in _commands(line)
                if "exec" in words]
    assert [c[:3] for c in commands] == [["exec", "ocr-serve", "--gpu"], ["exec", "ocr-serve", "--host"]], commands
    assert "--no-supervise" not in script, "the container runs the watchdog, as the CPU target does"
    # the server flags live in the launcher: the entrypoint passes ocr-serve options only
    assert not re.search(r"tritonserver\s|--backend-config|--model-repository|MALLOC_", script)
    for name in ("server", "cpu", "engine-builder"):
        assert _stage(name).values("USER")[-1].split(":")[0] == "10001", f"{name} runs as UID 10001"


def test_checkov_dockerfile_and_compose():
    """checkov's Dockerfile policies on the Dockerfile; its secrets scan on the whole of docker/ (checkov
    has no docker-compose policies: test_gpu_configs.py checks the compose file's structure)."""
    reports = [r for r in checkov_reports() if r.get("check_type") in ("dockerfile", "secrets")]
    dockerfile = [r for r in reports if r.get("check_type") == "dockerfile"]
    assert dockerfile and dockerfile[0]["summary"]["passed"] > 0, "checkov scanned no Dockerfile"
    assert not unexplained(reports), "\n".join(unexplained(reports))


def test_compose_runs_the_image_as_kubernetes_does():
    yaml = pytest.importorskip("yaml")
    triton = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())["services"]["triton"]
    assert triton["read_only"] is True and triton["init"] is True
    assert {t.split(":")[0] for t in triton["tmpfs"]} == {"/tmp", "/opt/ocr/run"}
    grace = int(triton["stop_grace_period"].rstrip("s"))
    assert grace >= 30 + 5, "the launcher's drain (30 s) and a margin"
    assert all(v.endswith(":ro") for v in triton["volumes"])
