"""Real servers that a test owns, so it can stop and restart them by PID without
touching the session's shared broker and redis-server, and a client on a flushed
database of a running one.

* :class:`OwnRedis`: a redis-server with an append-only file, so a stop (SIGTERM) and a
  start on the same port and directory brings the data back, as a restarted production
  Redis does; ``pause()``/``resume()`` (SIGSTOP/SIGCONT) make it a hung server that
  still accepts connections. The ``redis_server`` fixture (tests/conftest.py) is one.
* :class:`MlflowServer`: an MLflow tracking server (``mlflow server``) on a sqlite store,
  in its own process group so that stopping it stops its uvicorn worker too.
* :func:`flushed_redis`: the body of the client fixtures.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segstream.adapters.endpoints import Service, pid_runs, port_answers
from segstream.sources.stack import free_port, redis_binary, stop_service


@dataclass
class OwnRedis:
    """One redis-server this test started; ``url`` stays valid across restarts."""

    port: int
    workdir: Path
    tls: tuple[Path, Path, Path] | None = None  # (ca, cert, key): a TLS-only port
    svc: Service | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        if self.tls is None:
            return f"redis://127.0.0.1:{self.port}/0"
        from urllib.parse import quote

        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={quote(str(self.tls[0]))}"

    def start(self) -> None:
        binary = redis_binary()
        argv = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--dir", str(self.workdir), "--daemonize", "no"]
        if self.tls is None:
            argv += ["--port", str(self.port)]
        else:
            ca, crt, key = self.tls
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(crt),
                     "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                     "--tls-auth-clients", "no"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "redis.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.svc = Service("redis", self.url, True, proc.pid, binary, str(log))
        deadline = time.monotonic() + 20
        while not port_answers("127.0.0.1", self.port):
            assert pid_runs(proc.pid, binary), log.read_text()[-800:]
            assert time.monotonic() < deadline, f"redis-server did not open {self.port}"
            time.sleep(0.05)

    def stop(self) -> None:
        assert self.svc is not None
        self.resume()
        stop_service(self.svc)
        deadline = time.monotonic() + 10
        while port_answers("127.0.0.1", self.port):  # the port is closed: really down
            assert time.monotonic() < deadline
            time.sleep(0.05)

    def pause(self) -> None:
        assert self.svc is not None and self.svc.pid is not None
        os.kill(self.svc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.svc is not None and pid_runs(self.svc.pid, self.svc.binary):
            assert self.svc.pid is not None
            os.kill(self.svc.pid, signal.SIGCONT)


@dataclass
class MlflowServer:
    """``mlflow server`` on a sqlite store under ``root``, one uvicorn worker."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        mlflow = str(Path(sys.executable).parent / "mlflow")
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.root / "server.log", "ab") as out:
            self.proc = subprocess.Popen(
                [mlflow, "server", "--backend-store-uri", f"sqlite:///{self.root / 'db.sqlite'}",
                 "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", "1"],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # its own process group: the worker stops with it
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{self.uri}/health", timeout=1).close()
                return
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not answer /health"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the group this test created
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        deadline = time.monotonic() + 10
        while port_answers("127.0.0.1", self.port):
            assert time.monotonic() < deadline, "the mlflow worker still listens"
            time.sleep(0.05)


def flushed_redis(url: str) -> Iterator[Any]:
    """A client on the database at ``url``, flushed first (body of the client fixtures)."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    yield client
    client.close()
