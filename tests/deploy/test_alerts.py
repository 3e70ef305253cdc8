"""Alert rules: `promtool check rules`, the `promtool test rules` unit tests in
deploy/prometheus/tests/, every alert covered by a firing case and a quiet case, and
the streaming job's rules naming the job's own metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from segstream.streaming.metrics import exported_names as streaming_names
from tests.support.deploy import PROMETHEUS, load_yaml, promtool, run

pytestmark = pytest.mark.prometheus

RULE_FILES = sorted(PROMETHEUS.glob("alerts*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*_test.yml"))
METRIC = re.compile(r"\bsegstream_[a-z0-9_]+")


def alerts(path: Path) -> list[dict[str, object]]:
    return [r for g in load_yaml(path)["groups"] for r in g["rules"] if "alert" in r]


def test_rules_pass_promtool_check() -> None:
    out = run([promtool(), "check", "rules", *RULE_FILES])
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_rule_unit_tests_pass(path: Path) -> None:
    out = run([promtool(), "test", "rules", path.name], cwd=path.parent)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_firing_case_and_a_quiet_case() -> None:
    tested: dict[Path, tuple[set[str], set[str]]] = {}
    for test_file in TEST_FILES:
        spec = load_yaml(test_file)
        for rule_file in spec["rule_files"]:
            firing, quiet = tested.setdefault((test_file.parent / rule_file).resolve(),
                                              (set(), set()))
            for case in spec["tests"]:
                for t in case.get("alert_rule_test", []):
                    (firing if t["exp_alerts"] else quiet).add(t["alertname"])
    for rule_file in RULE_FILES:
        names = {str(r["alert"]) for r in alerts(rule_file)}
        firing, quiet = tested.get(rule_file.resolve(), (set(), set()))
        assert names <= firing, f"{rule_file.name}: never firing: {sorted(names - firing)}"
        assert names <= quiet, f"{rule_file.name}: never quiet: {sorted(names - quiet)}"


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for rule_file in RULE_FILES:
        for rule in alerts(rule_file):
            assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]  # type: ignore[index]
            assert rule["annotations"]["summary"], rule["alert"]  # type: ignore[index]


def test_streaming_rules_name_the_metrics_of_the_streaming_job() -> None:
    (path,) = RULE_FILES
    groups = {g["name"]: g["rules"] for g in load_yaml(path)["groups"]}
    used = {m for r in groups["segstream-streaming"] for m in METRIC.findall(str(r["expr"]))}
    assert used, "no streaming rule"
    assert used <= streaming_names(), f"not exported: {sorted(used - streaming_names())}"
    others = {m for name, rules in groups.items() if name != "segstream-streaming"
              for r in rules for m in METRIC.findall(str(r["expr"]))}
    assert not others & streaming_names(), "a streaming metric outside the streaming group"
