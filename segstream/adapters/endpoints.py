"""Where the services are: the settings first, else the local stack's state file.

Every command that talks to Kafka or Redis resolves its addresses here, so "configured
or started by `segstream stack up`" means the same everywhere. The state file
(``<data_dir>/stack/state.json``) is written by :mod:`segstream.sources.stack`.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from segstream.config import Settings


class StackError(RuntimeError):
    """The stack could not be started or found; the message says what to do."""


@dataclass
class Service:
    name: str
    address: str  # host:port for kafka, redis:// or http:// URL for the others
    managed: bool  # started by us (and stopped by `down`)
    pid: int | None = None
    binary: str | None = None
    log: str | None = None


@dataclass
class StackState:
    services: dict[str, Service] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> StackState:
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text())
        return cls({k: Service(**v) for k, v in raw.get("services", {}).items()})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"services": {k: asdict(v) for k, v in self.services.items()}},
                                  indent=2))
        tmp.replace(path)


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    redis_url: str


def state_path(settings: Settings) -> Path:
    return settings.stack_dir / "state.json"


def port_answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def pid_runs(pid: int | None, binary: str | None) -> bool:
    """True if ``pid`` is alive and still runs ``binary`` (guards against pid reuse)."""
    if not pid:
        return False
    try:
        exe = os.path.realpath(os.readlink(f"/proc/{pid}/exe"))  # gone or zombie: OSError
    except OSError:
        return False
    return binary is None or exe == os.path.realpath(binary)


def host_port(address: str) -> tuple[str, int]:
    """``host:port`` of the first server in an address or URL."""
    if "://" in address:
        url = urlsplit(address)
        return url.hostname or "127.0.0.1", url.port or 0
    host, _, port = address.split(",")[0].rpartition(":")
    return host, int(port)


def alive(svc: Service | None) -> bool:
    if svc is None:
        return False
    host, port = host_port(svc.address)
    return (not svc.managed or pid_runs(svc.pid, svc.binary)) and port_answers(host, port)


def running_service(settings: Settings, name: str) -> Service | None:
    svc = StackState.load(state_path(settings)).services.get(name)
    return svc if alive(svc) else None


def kafka_address(settings: Settings) -> str:
    """Kafka bootstrap servers: the setting, else the running stack's broker."""
    return settings.kafka_bootstrap or _address(StackState.load(state_path(settings)), "kafka")


def redis_address(settings: Settings, *, must_answer: bool = True) -> str:
    """Redis URL: the setting, else the running stack's redis-server.

    ``must_answer=False`` takes the recorded address even while Redis is down: the API
    starts, answers 503 and recovers by itself once Redis is back.
    """
    return settings.redis_url or _address(StackState.load(state_path(settings)), "redis",
                                          must_answer=must_answer)


def endpoints(settings: Settings) -> Endpoints:
    """Where Kafka and Redis are: settings first, else the running stack."""
    return Endpoints(kafka_address(settings), redis_address(settings))


def _address(state: StackState, name: str, *, must_answer: bool = True) -> str:
    svc = state.services.get(name)
    if svc is None or (must_answer and not alive(svc)):
        env = "SEGSTREAM_KAFKA_BOOTSTRAP" if name == "kafka" else "SEGSTREAM_REDIS_URL"
        raise StackError(f"no {name} is running: start the local stack with "
                         f"`segstream stack up`, or set {env}")
    return svc.address
