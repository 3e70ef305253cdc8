"""ASGI servers compared: uvicorn (uvloop, httptools) and granian, 1 and 2 workers,
each serving the bare FastAPI endpoint and segstream's segment lookup, same run.

    .venv/bin/python -m benchmarks.serving_servers [--duration 5] [--rounds 2]

The data are those of ``benchmarks/serving.py`` (10,000 folded users in its own
redis-server, a k=7 model). Each server runs as the production command would run it
(docs/deploy.md), from an import string and a factory, no access log; with 2 workers
``PROMETHEUS_MULTIPROC_DIR`` is set as ``segstream serve`` sets it. ``wrk -t1 -c32``
(the load generator shares the 2 cores). Prints a Markdown table: rps and p99 of the
bare endpoint and the lookup, and lookup / bare for each server and worker count.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.serving import (
    BARE_LUA,
    KEY,
    LOOKUP_LUA,
    build_model,
    fill_redis,
    user_records,
    wait_http,
)
from segstream.app.loadtest import run_wrk

BARE = "segstream.app.loadtest:bare_app"
API = "benchmarks.serving_app:api_from_env"


def command(server: str, target: str, port: int, workers: int) -> list[str]:
    """The server's command line for ``target`` (a factory's import string)."""
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", target, "--factory", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers), "--loop", "uvloop",
                "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    return [str(Path(sys.executable).with_name("granian")), "--interface", "asgi",
            "--factory", "--host", "127.0.0.1", "--port", str(port), "--workers",
            str(workers), "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
            target]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    from segstream.sources.stack import free_port, start_redis, stop_service

    tmp = Path(tempfile.mkdtemp(prefix="segstream-servers-"))
    redis_svc = start_redis(free_port(), tmp / "redis", tmp / "redis.log")
    rows = []
    try:
        users, aggs = user_records()
        fill_redis(redis_svc.address, users, aggs)
        build_model(tmp / "model", aggs)
        scripts = {"bare": tmp / "bare.lua", "lookup": tmp / "lookup.lua"}
        scripts["bare"].write_text(BARE_LUA)
        scripts["lookup"].write_text(LOOKUP_LUA)
        for server in ("uvicorn", "granian"):
            for workers in (1, 2):
                env = {**os.environ, "SEGSTREAM_REDIS_URL": redis_svc.address,
                       "SEGSTREAM_API_KEYS": f'["{KEY}"]', "SEGSTREAM_API_MODEL_POLL_S": "60",
                       "SEGSTREAM_DATA_DIR": str(tmp / "data"),
                       "BENCH_MODEL_DIR": str(tmp / "model")}
                if workers > 1:
                    mp = tmp / f"prom-{server}-{workers}"
                    mp.mkdir()
                    env["PROMETHEUS_MULTIPROC_DIR"] = str(mp)
                bare_port, api_port = free_port(), free_port()
                log = open(tmp / f"{server}-{workers}.log", "ab")  # noqa: SIM115
                procs = [subprocess.Popen(command(server, BARE, bare_port, workers), env=env,
                                          stdout=log, stderr=subprocess.STDOUT),
                         subprocess.Popen(command(server, API, api_port, workers), env=env,
                                          stdout=log, stderr=subprocess.STDOUT)]
                try:
                    wait_http(f"http://127.0.0.1:{bare_port}/bare/x")
                    wait_http(f"http://127.0.0.1:{api_port}/readyz")
                    urls = {"bare": f"http://127.0.0.1:{bare_port}",
                            "lookup": f"http://127.0.0.1:{api_port}"}
                    for name in ("bare", "lookup"):  # warm-up
                        run_wrk(urls[name], scripts[name], 2, args.connections)
                    got: dict[str, list[dict[str, float]]] = {"bare": [], "lookup": []}
                    for _ in range(args.rounds):
                        for name in ("bare", "lookup"):
                            got[name].append(run_wrk(urls[name], scripts[name],
                                                     args.duration, args.connections))
                finally:
                    for p in procs:
                        p.terminate()
                    for p in procs:
                        p.wait(20)
                    log.close()
                med = {n: {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
                       for n, runs in got.items()}
                rows.append((server, workers, med))
        print(f"\nwrk -t1 -c{args.connections}; median of {args.rounds} x {args.duration}s")
        print("\n| server | workers | bare rps | bare p99 ms | lookup rps | lookup p99 ms "
              "| lookup / bare | non-2xx |")
        print("|---|---|---|---|---|---|---|---|")
        for server, workers, med in rows:
            b, lk = med["bare"], med["lookup"]
            print(f"| {server} | {workers} | {b['rps']:,.0f} | {b['p99']:.2f} | "
                  f"{lk['rps']:,.0f} | {lk['p99']:.2f} | {lk['rps'] / b['rps']:.2f} | "
                  f"{b['non2xx'] + lk['non2xx']:.0f} |")
    finally:
        stop_service(redis_svc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
