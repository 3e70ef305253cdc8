"""Every metric named by the Grafana dashboards and the alert rules is exported: the
streaming job's names (``segstream_stream_*``) by streaming/metrics.py, every other
by serving/metrics.py; every exported family is on a dashboard. (That the queries
parse and return series from the running services: test_prometheus.py.)"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from segstream.serving.metrics import exported_names as serving_names
from segstream.streaming.metrics import exported_names as streaming_names
from tests.support.deploy import PROMETHEUS, dashboard_targets, dashboards

METRIC = re.compile(r"\bsegstream_[a-z0-9_]+")
STREAMING = "segstream_stream_"
# Which dashboard shows which module's metrics.
SHOWN_ON = {"segstream-serving": "serving", "segstream-drift": "serving",
            "segstream-streaming": "streaming"}


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def _exported(name: str) -> set[str]:
    return streaming_names() if name.startswith(STREAMING) else serving_names()


def test_the_three_dashboards_are_there_with_unique_ids_and_panel_queries() -> None:
    found = dashboards()
    assert set(found) == set(SHOWN_ON)
    assert len({d["uid"] for d in found.values()}) == len(found)
    for name, d in found.items():
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        for panel in d["panels"]:
            assert panel.get("targets") or panel["type"] == "text", (name, panel["title"])
            assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), (name, panel["title"])


@pytest.mark.parametrize("source", ["dashboards", "alerts"])
def test_every_named_metric_is_exported(source: str) -> None:
    exprs = ([e for _, _, e in dashboard_targets()] if source == "dashboards"
             else _alert_exprs())
    assert exprs
    named = {m for e in exprs for m in METRIC.findall(e)}
    assert {m for m in named if m.startswith(STREAMING)}, "no streaming metric named"
    missing = sorted(m for m in named if m not in _exported(m))
    assert not missing, f"not exported: {missing}"


def test_every_exported_family_is_on_its_dashboards() -> None:
    def family(name: str) -> str:
        return re.sub(r"_(bucket|sum|count|created|total)$", "", name)

    shown: dict[str, set[str]] = {"serving": set(), "streaming": set()}
    for name, _, expr in dashboard_targets():
        shown[SHOWN_ON[name]] |= {family(m) for m in METRIC.findall(expr)}
    for module, names in (("serving", serving_names()), ("streaming", streaming_names())):
        missing = {family(n) for n in names} - shown[module]
        assert not missing, f"{module} metrics on no dashboard of theirs: {sorted(missing)}"


@pytest.mark.prometheus
def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is not installed"
    out = subprocess.run([promtool, "check", "rules", str(PROMETHEUS / "alerts.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
