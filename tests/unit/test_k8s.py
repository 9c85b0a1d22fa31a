"""docker/k8s: every overlay renders with `kubectl kustomize`, every object validates against the
Kubernetes schemas (kubernetes-validate; CRDs skipped by name), checkov finds nothing unexplained, and
the manifests keep the promises of docs/kubernetes.md (probes, ports, drain, shm sizing, GPU engines)."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from iac import OVERLAYS, checkov_reports, render, unexplained

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
# custom resources have no bundled schema: checked below by what they must select
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
# the oldest release with every API used (policy/v1, autoscaling/v2) among the bundled schemas, and the newest
K8S_VERSIONS = ("1.25.0", None)
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002, "watchdog": 8003, "paddlex": 8080}
DRAIN_SECONDS = 30        # the launcher's drain of in-flight requests at SIGTERM
SHM_PER_INSTANCE = 256 << 20  # /dev/shm budget of one Python-backend instance (docs/kubernetes.md)


def _render(overlay: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(render(overlay)) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, _render(request.param)


def _one(objs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} objects"
    return found[0]


def _quantity(q: str | int) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 10**3, "M": 10**6, "G": 10**9}
    m = re.fullmatch(r"(\d+)([A-Za-z]*)", str(q))
    assert m, q
    return int(m.group(1)) * units.get(m.group(2), 1)


def _server(objs: list[dict]) -> tuple[dict, dict]:
    dep = _one(objs, "Deployment", "ppocr-triton")
    pod = dep["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == "server")


def test_every_object_validates(rendered):
    kv = pytest.importorskip("kubernetes_validate")
    overlay, objs = rendered
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor",
            "ConfigMap", "NetworkPolicy"} <= kinds
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            continue
        for version in K8S_VERSIONS:
            kv.validate(obj, version or kv.latest_version(), strict=True)


def test_the_validator_rejects_a_broken_object(rendered):
    kv = pytest.importorskip("kubernetes_validate")
    dep = copy.deepcopy(_one(rendered[1], "Deployment"))
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = {"name": "http"}
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, kv.latest_version(), strict=True)


def test_checkov_finds_nothing_unexplained():
    _render("cpu")  # skips without kubectl
    reports = [r for r in checkov_reports() if r.get("check_type") == "kubernetes"]
    assert reports and reports[0]["summary"]["passed"] > 0, "checkov scanned no Kubernetes object"
    assert not unexplained(reports), "\n".join(unexplained(reports))


def test_probes_ports_and_rollout(rendered):
    _, objs = rendered
    dep = _one(objs, "Deployment", "ppocr-triton")
    pod, server = _server(objs)
    assert {p["name"]: p["containerPort"] for p in server["ports"]} == PORTS
    assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert server["startupProbe"]["httpGet"]["path"].startswith("/v2/health/")
    rolling = dep["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0 and rolling["maxSurge"] >= 1, "roll out without losing capacity"
    pre_stop = server["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + DRAIN_SECONDS + 5
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    services = {s["metadata"]["name"]: s for s in objs if s["kind"] == "Service"}
    for svc in services.values():
        assert svc["spec"]["selector"].items() <= labels.items(), svc["metadata"]["name"]
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in PORTS and port["port"] == PORTS[port["targetPort"]]
    assert {p["name"] for p in services["ppocr-triton"]["spec"]["ports"]} == {"http", "grpc", "paddlex"}
    assert [p["name"] for p in services["ppocr-triton-metrics"]["spec"]["ports"]] == ["metrics", "watchdog"]
    headless = services["ppocr-triton-headless"]["spec"]
    assert headless["clusterIP"] == "None" and not headless.get("publishNotReadyAddresses")
    pdb = _one(objs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    monitor = _one(objs, "ServiceMonitor")
    metrics_labels = services["ppocr-triton-metrics"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics_labels.items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics", "watchdog"]


def test_non_root_read_only_with_writable_memory_dirs(rendered):
    _, objs = rendered
    for obj in objs:
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] >= 10000
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"] and c["resources"]["limits"]
    pod, server = _server(objs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in server["volumeMounts"]}
    for path in ("/tmp", "/opt/ocr/run", "/dev/shm"):
        assert "emptyDir" in mounts[path], path
    assert mounts["/dev/shm"]["emptyDir"]["medium"] == "Memory"


def _python_instances(target: str) -> int:
    """Python-backend instances of a target's repository: each has its own /dev/shm region."""
    pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    text_format = pytest.importorskip("google.protobuf.text_format")
    configs = list((ROOT / "python_backend" / "models").glob("*/config.pbtxt"))
    configs += list((ROOT / "model_repository" / target).glob("*/config.pbtxt"))
    counts = {}
    for path in configs:
        cfg = text_format.Parse(path.read_text(), pb2.ModelConfig())
        if cfg.backend == "python":
            counts[cfg.name] = sum(g.count or 1 for g in cfg.instance_group)
    if target == "gpu":
        steps = json.loads((ROOT / "model_repository" / "gpu" / "step_instances.json").read_text())
        counts.update({k: v for k, v in steps.items() if k != "doc"})
    return sum(counts.values())


def test_shm_and_memory_sized_for_the_python_instances(rendered):
    overlay, objs = rendered
    pod, server = _server(objs)
    shm = _quantity(next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]["sizeLimit"])
    assert shm >= _python_instances(overlay) * SHM_PER_INSTANCE
    # memory-backed emptyDirs count against the container's memory limit
    assert _quantity(server["resources"]["limits"]["memory"]) >= shm + (2 << 30)
    compose = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())
    size = compose["services"]["triton"]["shm_size"].lower().replace("gb", "Gi").replace("mb", "Mi")
    assert _quantity(size) >= _python_instances("gpu") * SHM_PER_INSTANCE


def test_hpa_scales_on_queue_time_through_the_adapter_with_a_cpu_fallback(rendered):
    _, objs = rendered
    hpa = _one(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ppocr-triton"
    pods = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"] == ["cpu"]
    rules = yaml.safe_load(_one(objs, "ConfigMap", "ppocr-prometheus-adapter-rules")["data"]["config.yaml"])["rules"]
    rule = next(r for r in rules if r["name"]["as"] == pods[0]["pods"]["metric"]["name"])
    query = rule["metricsQuery"]
    assert 'nv_inference_queue_duration_us{model="ocr"' in query and 'nv_inference_request_success{model="ocr"' in query
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert hpa["spec"]["minReplicas"] >= 2, "one replica left by the PDB while another rolls"


def test_gpu_overlay_runs_engines_of_its_gpu_type():
    objs = _render("gpu")
    pod, server = _server(objs)
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    product = pod["nodeSelector"]["nvidia.com/gpu.product"]
    engines = next(m for m in server["volumeMounts"] if m["mountPath"] == "/opt/ocr/build/engines")
    assert engines["readOnly"]
    claim = next(v for v in pod["volumes"] if v["name"] == engines["name"])["persistentVolumeClaim"]["claimName"]
    jobs = [o for o in objs if o["kind"] == "Job"]
    per_type = {}
    for job in jobs:
        spec = job["spec"]["template"]["spec"]
        build = spec["containers"][0]
        assert build["resources"]["limits"]["nvidia.com/gpu"] == 1
        target = build["args"][build["args"].index("--gpu-target") + 1]
        job_claim = next(v for v in spec["volumes"] if v["name"] == "engines")["persistentVolumeClaim"]["claimName"]
        per_type[spec["nodeSelector"]["nvidia.com/gpu.product"]] = (target, job_claim)
    assert len(per_type) == len(jobs) >= 2, "one engine-build Job per GPU type"
    assert len({c for _, c in per_type.values()}) == len(jobs), "each GPU type has its own engines volume"
    assert per_type[product][1] == claim, "the server reads the engines built on its own GPU type"
    claims = {o["metadata"]["name"]: o for o in objs if o["kind"] == "PersistentVolumeClaim"}
    assert {c for _, c in per_type.values()} <= set(claims)
    assert all("ReadWriteMany" in claims[c]["spec"]["accessModes"] for _, c in per_type.values())
    cpu_pod, cpu_server = _server(_render("cpu"))
    assert "nvidia.com/gpu" not in cpu_server["resources"]["limits"] and "nodeSelector" not in cpu_pod
