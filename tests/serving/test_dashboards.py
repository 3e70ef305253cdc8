"""Every metric named by the Grafana dashboard and the alert rules is exported."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from serving.metrics import exported_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bsegstream_[a-z0-9_]+")


def _dashboard_exprs() -> list[str]:
    out = []
    for path in (DEPLOY / "grafana").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            out += [t["expr"] for t in panel["targets"]]
    return out


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_named_metric_is_exported(source: str) -> None:
    exprs = _dashboard_exprs() if source == "dashboard" else _alert_exprs()
    assert exprs
    named = {m for e in exprs for m in METRIC.findall(e)}
    assert named, "no segstream metric named"
    assert named <= exported_names(), f"not exported: {sorted(named - exported_names())}"


def test_dashboard_covers_every_exported_family() -> None:
    def family(name: str) -> str:
        return re.sub(r"_(bucket|sum|count|created|total)$", "", name)

    shown = {family(m) for e in _dashboard_exprs() for m in METRIC.findall(e)}
    exported = {family(n) for n in exported_names()}
    assert exported <= shown, f"not on the dashboard: {sorted(exported - shown)}"


@pytest.mark.prometheus
def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is not installed"
    out = subprocess.run([promtool, "check", "rules", str(DEPLOY / "prometheus/alerts.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
