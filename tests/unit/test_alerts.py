"""The Prometheus alert rules in docker/prometheus/ are valid (`promtool check rules`), fire when they
should (`promtool test rules` on synthetic series), and docker/prometheus.yml loads them."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "docker" / "prometheus"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus'; "
                                "scripts/setup_env.sh test installs it when run as root)")


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    assert PROMTOOL is not None
    run = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout + run.stderr


def test_alert_rules_are_valid() -> None:
    out = promtool("check", "rules", "alerts.yml")
    assert "SUCCESS: 5 rules found" in out, out


def test_alerts_fire_on_the_series_they_watch() -> None:
    promtool("test", "rules", "alerts_test.yml")


def test_the_scrape_config_loads_the_rules_and_scrapes_the_watchdog() -> None:
    out = promtool("check", "config", "prometheus.yml", cwd=ROOT / "docker")
    assert "alerts.yml" in out and "SUCCESS" in out, out
    assert "ocr-watchdog" in (ROOT / "docker" / "prometheus.yml").read_text()
