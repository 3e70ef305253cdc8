"""Real clusters on loopback, for the distribution tests and the benchmarks: a Spark
standalone cluster (a master and one-core workers, from pyspark's own jars) and a
3-master Redis Cluster.

Both are started as subprocesses on free ports and stopped by PID at the end; nothing
here is a stand-in for the engine it names.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from segstream.adapters.endpoints import port_answers
from segstream.sources.stack import free_port, redis_binary


def _cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free too and valid."""
    for _ in range(200):
        port = free_port()
        if port <= 55535 and not port_answers("127.0.0.1", port + 10000):
            return port
    raise RuntimeError("no free port pair (p, p + 10000) for a Redis Cluster node")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None
           ) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _wait(what: str, ready: object, procs: list[subprocess.Popen[bytes]], log: Path,
          timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(ready) and ready():
            return
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{what} exited early; see {log}:\n{log.read_text()[-2000:]}")
        time.sleep(0.3)
    raise RuntimeError(f"{what} not ready within {timeout_s} s; see {log}")


@dataclass(frozen=True)
class SparkCluster:
    master_url: str  # spark://127.0.0.1:PORT
    ui_url: str

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=2) as r:
                state = json.load(r)
        except OSError:
            return 0
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


@contextmanager
def spark_standalone(workdir: Path, workers: int = 2) -> Iterator[SparkCluster]:
    """A master and ``workers`` one-core, 1 GiB workers (bin/spark-class, as the docs
    of pip's pyspark allow: it ships no sbin/start-*.sh)."""
    import pyspark

    home = Path(pyspark.__file__).parent
    spark_class = str(home / "bin" / "spark-class")
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    workdir.mkdir(parents=True, exist_ok=True)
    port, ui = free_port(), free_port()
    log = workdir / "master.log"
    procs = [_spawn([spark_class, "org.apache.spark.deploy.master.Master", "--host",
                     "127.0.0.1", "--port", str(port), "--webui-port", str(ui)], log, env)]
    cluster = SparkCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}")
    try:
        _wait("spark master", lambda: port_answers("127.0.0.1", port), procs, log)
        for i in range(workers):
            wdir = workdir / f"worker{i}"
            wdir.mkdir(exist_ok=True)
            procs.append(_spawn([spark_class, "org.apache.spark.deploy.worker.Worker",
                                 "--cores", "1", "--memory", "1g", "--work-dir", str(wdir),
                                 "--webui-port", str(free_port()), cluster.master_url],
                                workdir / f"worker{i}.log", env))
        _wait(f"{workers} spark workers", lambda: cluster.alive_workers() >= workers, procs,
              workdir / "worker0.log")
        yield cluster
    finally:
        _stop(procs)


@contextmanager
def redis_cluster(workdir: Path, masters: int = 3) -> Iterator[list[str]]:
    """``masters`` redis-server processes in cluster mode, joined by
    ``redis-cli --cluster create``; yields their ``host:port`` seeds."""
    server = redis_binary()
    cli = str(Path(server).with_name("redis-cli"))
    ports = [_cluster_port() for _ in range(masters)]
    procs = []
    try:
        for port in ports:
            d = workdir / str(port)
            d.mkdir(parents=True, exist_ok=True)
            log = d / "redis.log"
            procs.append(_spawn([server, "--port", str(port), "--bind", "127.0.0.1",
                                 "--cluster-enabled", "yes", "--cluster-config-file",
                                 str(d / "nodes.conf"), "--save", "", "--appendonly", "no",
                                 "--dir", str(d)], log))
            _wait(f"redis-server {port}", lambda p=port: port_answers("127.0.0.1", p),  # type: ignore[misc]
                  procs, log)
        seeds = [f"127.0.0.1:{p}" for p in ports]
        subprocess.run([cli, "--cluster", "create", *seeds, "--cluster-yes"], check=True,
                       capture_output=True, timeout=60)

        def ready() -> bool:  # every node, not one: a client may be routed to any
            return all("cluster_state:ok" in subprocess.run(
                [cli, "-p", str(p), "cluster", "info"], capture_output=True, text=True,
                timeout=10).stdout for p in ports)

        _wait("redis cluster", ready, procs, workdir / str(ports[0]) / "redis.log")
        yield seeds
    finally:
        _stop(procs)
