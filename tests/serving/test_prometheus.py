"""A real Prometheus server scrapes /metrics; drift gauges move with drifted traffic."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from segstream.stack import free_port
from tests.serving.conftest import Api, put_users, recent_ends

pytestmark = [pytest.mark.prometheus, pytest.mark.redis]


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus (Debian package) is not installed; run scripts/setup.sh"
    procs: list[subprocess.Popen[bytes]] = []

    def start(target_url: str) -> str:
        port = free_port()
        target = target_url.removeprefix("http://")
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                       "scrape_configs:\n  - job_name: api\n"
                       f"    static_configs: [{{targets: ['{target}']}}]\n")
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.2)

    yield start
    for p in procs:
        p.terminate()
        p.wait(20)


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def _wait_value(prom: str, expr: str, ok: Callable[[float], bool], what: str) -> float:
    deadline, last = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        res = _query(prom, expr)
        if res:
            last = float(res[0]["value"][1])
            if ok(last):
                return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: {expr} = {last}")


def _serve(api: Api, users: list[str]) -> None:
    with httpx.Client(base_url=api.url, headers=api.headers) as client:
        for u in users:
            assert client.get(f"/v1/users/{u}/segment").status_code == 200


def test_prometheus_scrapes_and_drift_gauges_move(
    api_factory: Callable[..., Api], redis_client: Any,
    prometheus_for: Callable[[str], str],
) -> None:
    normal = [f"n{i}" for i in range(300)]  # like the training sample: the three archetypes
    put_users(redis_client, {u: i % 3 for i, u in enumerate(normal)}, seed=11,
              end_ms=recent_ends(normal, seed=13))
    drifted = [f"d{i}" for i in range(300)]  # big spenders spending 25x: one segment, far out
    put_users(redis_client, dict.fromkeys(drifted, 1), seed=12, intensity=25.0)
    api = api_factory(api_drift_window=300)
    prom = prometheus_for(api.url)

    _serve(api, normal)
    _wait_value(prom, "max(segstream_drift_window_rows)", lambda v: v >= 300,
                "window filled with normal traffic")
    psi_normal = _wait_value(prom, "max(segstream_feature_psi)", lambda v: v >= 0, "psi")
    js_normal = _wait_value(prom, "max(segstream_segment_share_js_divergence)",
                            lambda v: v >= 0, "js")
    assert psi_normal < 0.25, "traffic like the baseline is not flagged"

    _serve(api, drifted)
    psi_drift = _wait_value(prom, "max(segstream_feature_psi)", lambda v: v > 1.0,
                            "PSI rises with drifted traffic")
    js_drift = _wait_value(prom, "max(segstream_segment_share_js_divergence)",
                           lambda v: v > js_normal + 0.1, "JS divergence rises")
    assert psi_drift > psi_normal and js_drift > js_normal

    # request metrics by route template and status; no user id in any label
    series = _query(prom, 'segstream_http_requests_total{route="/v1/users/{user_id}/segment"}')
    assert any(s["metric"]["status"] == "200" for s in series)
    for s in _query(prom, '{__name__=~"segstream_.*"}'):
        labels = " ".join(v for k, v in s["metric"].items() if k != "__name__")
        assert not any(u in labels.split() for u in ("n0", "d0", "n1"))
    assert _query(prom, "segstream_assignments_total")
    assert _query(prom, "segstream_model_version")[0]["value"][1] == "1"
