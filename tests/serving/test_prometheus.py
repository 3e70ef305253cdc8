"""A real Prometheus server scrapes /metrics: drift gauges move with drifted traffic;
scraping the API and a running streaming job, every query of every Grafana dashboard
parses and returns series, and the job's counters count what it was sent."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from segstream.adapters.kafka import Producer
from segstream.config import Settings
from segstream.sources.stack import free_port
from tests.support.api import Api
from tests.support.archetypes import put_users, recent_ends
from tests.support.deploy import dashboard_targets
from tests.support.streaming import job_env

pytestmark = [pytest.mark.prometheus, pytest.mark.redis]


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[..., str]]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus (Debian package) is not installed; run scripts/setup.sh"
    procs: list[subprocess.Popen[bytes]] = []

    def start(*target_urls: str) -> str:
        """Prometheus scraping each target (``http://host:port``, path /metrics) every
        second, as its own job; returns its URL once it is ready."""
        port = free_port()
        jobs = "".join(f"  - job_name: job{i}\n    static_configs: "
                       f"[{{targets: ['{url.removeprefix('http://')}']}}]\n"
                       for i, url in enumerate(target_urls))
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                       f"scrape_configs:\n{jobs}")
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
    prometheus_for: Callable[..., str],
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


# --- every dashboard query on live services ----------------------------------------------
def _stream_events(now_ms: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of ten records: seven accepted events of three users, a resent
    duplicate, a late event (an hour behind u1's newest, past the 10-minute watermark)
    and one record that is not JSON."""
    def event(user: str, n: int, minutes_ago: int) -> tuple[bytes, bytes]:
        body = {"user_id": user, "event_id": f"{user}-{n}", "event_type": "page_view",
                "ts": now_ms - minutes_ago * 60_000, "platform": "web"}
        return user.encode(), orjson.dumps(body)

    u1 = [event("u1", 0, 60), event("u1", 1, 50), event("u1", 2, 40)]
    return [*u1, u1[1], event("u1", 3, 100), event("u2", 0, 30), event("u2", 1, 20),
            event("u3", 0, 15), event("u3", 1, 10), (b"bad", b"not json")]


def _unanswered(prom: str, targets: list[tuple[str, str, str]]) -> list[str]:
    """The targets whose query fails or returns no series, with the reason."""
    bad = []
    for dashboard, title, expr in targets:
        r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
        body = r.json()
        if body.get("status") != "success":
            bad.append(f"{dashboard} / {title}: {expr}: {body.get('error')}")
        elif not body["data"]["result"]:
            bad.append(f"{dashboard} / {title}: {expr}: no series")
    return bad


@pytest.mark.kafka
@pytest.mark.spark
@pytest.mark.slow
def test_every_dashboard_query_returns_series_from_the_api_and_a_running_stream_job(
    api_factory: Callable[..., Api], redis_client: Any, kafka_bootstrap: str,
    redis_url: str, settings_factory: Callable[..., Settings],
    topic_factory: Callable[..., str], prometheus_for: Callable[..., str], tmp_path: Path,
) -> None:
    topics = {f"topic_{t}": topic_factory(t, partitions=2) for t in ("events", "dlq",
                                                                      "features")}
    stream_settings = settings_factory(data_dir=tmp_path / "stream", **topics)
    metrics_port = free_port()
    log = open(tmp_path / "stream.log", "wb")  # noqa: SIM115 - closed below
    job = subprocess.Popen(  # the slowest to start (a JVM): first
        [str(Path(sys.executable).parent / "segstream"), "stream", "--trigger", "500ms",
         "--metrics-port", str(metrics_port)],
        env=job_env(stream_settings, kafka_bootstrap, redis_url), stdout=log, stderr=log)
    try:
        producer = Producer(kafka_bootstrap)
        records = _stream_events(int(time.time() * 1000))
        for key, value in records:
            producer.send(stream_settings.topic_events, value, key=key)
        producer.flush()
        del producer

        users = [f"n{i}" for i in range(30)]
        put_users(redis_client, {u: i % 3 for i, u in enumerate(users)}, seed=11,
                  end_ms=recent_ends(users, seed=13))
        api = api_factory()
        prom = prometheus_for(api.url, f"http://127.0.0.1:{metrics_port}")
        _serve(api, users)

        count = "sum(segstream_stream_input_records_total)"
        _wait_value(prom, count, lambda v: v >= len(records), "the job read every record")
        targets = dashboard_targets()
        assert {d for d, _, _ in targets} == {"segstream-serving", "segstream-drift",
                                              "segstream-streaming"}
        deadline = time.monotonic() + 30  # a rate() needs two scrapes of a new series
        while bad := _unanswered(prom, targets):
            assert time.monotonic() < deadline, "\n".join(bad)
            time.sleep(1)

        def value(expr: str) -> float:
            (sample,) = _query(prom, expr)
            return float(sample["value"][1])

        assert value(count) == len(records)
        assert value('segstream_stream_dlq_records_total{reason="invalid_json"}') == 1
        assert value('segstream_stream_dlq_records_total{reason="late"}') == 1
        assert value("sum(segstream_stream_dlq_records_total)") == 2
        assert value("segstream_stream_duplicate_records_total") == 1
        assert value("segstream_stream_users_updated_total") >= 3
        lag = _query(prom, "segstream_stream_partition_lag_records")
        assert {(s["metric"]["topic"], s["metric"]["partition"]) for s in lag} == {
            (stream_settings.topic_events, "0"), (stream_settings.topic_events, "1")}
        # caught up, the job still reports (Spark's idle ticks): the stalled alert's input
        _wait_value(prom, "max(segstream_stream_last_report_timestamp_seconds) - "
                    "max(segstream_stream_last_batch_timestamp_seconds)", lambda v: v > 5,
                    "idle reports after the last batch")
        assert job.poll() is None, "the job is still running when scraped"
    finally:
        job.send_signal(signal.SIGTERM)  # finishes the batch in flight, then stops
        try:
            code = job.wait(90)
        except subprocess.TimeoutExpired:
            job.kill()
            job.wait()
            raise
        finally:
            log.close()
    assert code == 0, (tmp_path / "stream.log").read_text()[-3000:]
