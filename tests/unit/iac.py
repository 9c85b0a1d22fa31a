"""Shared by test_dockerfile.py and test_k8s.py: rendering docker/k8s and one cached checkov run."""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
OVERLAYS = ("cpu", "gpu")


def render(overlay: str) -> str:
    """`kubectl kustomize` of an overlay (the test skips without kubectl)."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed (scripts/setup_env.sh test installs Debian's)")
    proc = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _checkov() -> str:
    tools = Path(os.environ.get("TOOLS_VENV", ROOT / ".venv-tools"))
    found = tools / "bin" / "checkov"
    path = str(found) if found.exists() else shutil.which("checkov")
    if not path:
        pytest.skip("checkov is not installed (scripts/setup_env.sh test installs it into .venv-tools)")
    return path


def run_checkov(args: list[str]) -> list[dict]:
    """checkov's JSON reports (one per framework), offline."""
    proc = subprocess.run([_checkov(), *args, "--skip-download", "--quiet", "--compact", "-o", "json"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    reports: list[dict] = []
    decoder, out = json.JSONDecoder(), proc.stdout.strip()
    while out.startswith(("[", "{")):  # one JSON document per scanned directory
        doc, end = decoder.raw_decode(out)
        reports += doc if isinstance(doc, list) else [doc]
        out = out[end:].strip()
    return reports


@functools.cache
def checkov_reports() -> tuple[dict, ...]:
    """One checkov run (it takes seconds to start) over docker/ (Dockerfile policies, secrets) and the
    rendered overlays (Kubernetes policies); the overlays are left out when kubectl is missing."""
    _checkov()
    with tempfile.TemporaryDirectory() as tmp:  # one directory: checkov drops all but one of several -d
        shutil.copytree(DOCKER, Path(tmp) / "docker", ignore=shutil.ignore_patterns("k8s"))
        if shutil.which("kubectl"):
            (Path(tmp) / "k8s").mkdir()
            for overlay in OVERLAYS:
                (Path(tmp) / "k8s" / f"{overlay}.yaml").write_text(render(overlay))
        return tuple(run_checkov(["-d", tmp, "--framework", "dockerfile", "secrets", "kubernetes"]))


def unexplained(reports: list[dict] | tuple[dict, ...]) -> list[str]:
    """Failed checks, and skipped ones whose skip comment gives no reason."""
    bad = []
    for report in reports:
        results = report.get("results", {})
        for check in results.get("failed_checks", []):
            bad.append(f"{check['check_id']} {check['check_name']} ({check['file_path']}, {check['resource']})")
        for check in results.get("skipped_checks", []):
            comment = (check.get("check_result") or {}).get("suppress_comment", "")
            if not comment or comment == "No comment provided":
                bad.append(f"{check['check_id']} skipped without a reason ({check['file_path']})")
    return bad
