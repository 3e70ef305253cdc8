"""`segstream stack up|down|status` against real processes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from segstream.adapters.endpoints import StackError, StackState, endpoints, pid_runs, state_path
from segstream.adapters.kafka import count_records
from segstream.config import Settings
from segstream.sources.stack import down, status, up

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def test_up_twice_starts_nothing_twice_and_down_stops_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", topic_partitions=2)
    state, done = up(settings)
    try:
        kafka, red = state.services["kafka"], state.services["redis"]
        assert kafka.managed and red.managed
        assert pid_runs(kafka.pid, kafka.binary) and pid_runs(red.pid, red.binary)
        assert any("created events, events.dlq, features, segment-changes" in d for d in done)

        state2, done2 = up(settings)
        assert state2.services["kafka"].pid == kafka.pid
        assert state2.services["redis"].pid == red.pid
        assert any("kafka: already running" in d for d in done2)
        assert any("redis: already running" in d for d in done2)
        assert "topics: all present" in done2

        ep = endpoints(settings)
        assert redis.Redis.from_url(ep.redis_url).ping()
        assert count_records(ep.kafka_bootstrap, "events") == 0
        assert all(alive for _, alive in status(settings).values())
    finally:
        lines = down(settings)
    assert any(f"stopped pid {kafka.pid}" in line for line in lines)
    assert not pid_runs(kafka.pid, kafka.binary) and not pid_runs(red.pid, red.binary)
    assert not state_path(settings).exists()


def test_configured_services_are_used_and_left_alone(
    settings_factory: Callable[..., Settings], kafka_bootstrap: str, redis_url: str
) -> None:
    settings = settings_factory()
    state, done = up(settings)
    assert not state.services["kafka"].managed and not state.services["redis"].managed
    assert f"kafka: using {kafka_bootstrap} (external, not started)" in done
    lines = down(settings)
    assert all("left running" in line for line in lines)
    assert redis.Redis.from_url(redis_url).ping()
    assert count_records(kafka_bootstrap, settings.topic_events) >= 0  # broker still answers


def test_a_dead_pid_in_the_state_file_is_restarted(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", topic_partitions=1)
    state, _ = up(settings)
    old = state.services["redis"]
    try:
        assert old.pid is not None
        os.kill(old.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pid_runs(old.pid, old.binary) and time.monotonic() < deadline:
            time.sleep(0.05)
        state2, done = up(settings)
        assert state2.services["redis"].pid != old.pid
        assert any("redis: started" in d for d in done)
        assert any("kafka: already running" in d for d in done)
    finally:
        down(settings)


def test_endpoints_without_a_stack_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="segstream stack up"):
        endpoints(Settings(data_dir=tmp_path / "empty"))


def test_state_file_round_trip(tmp_path: Path) -> None:
    st = StackState.load(tmp_path / "none.json")
    assert st.services == {}


def test_added_services_show_in_status_and_down_stops_them(
    settings_factory: Callable[..., Settings],
) -> None:
    import subprocess
    import sys

    from segstream.adapters.endpoints import Service, port_answers, running_service
    from segstream.sources.stack import add_service, free_port

    settings = settings_factory()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_answers("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        add_service(settings, Service("api", f"http://127.0.0.1:{port}/", True, proc.pid,
                                      sys.executable))
        assert running_service(settings, "api") is not None
        assert status(settings)["api"][1] is True
        lines = down(settings)
        assert f"api: stopped pid {proc.pid}" in lines
        assert proc.wait(timeout=10) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
