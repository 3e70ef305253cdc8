"""Serving benchmark: lookup rps and latency vs a bare FastAPI endpoint, same run.

    .venv/bin/python -m benchmarks.serving [--duration 10] [--rounds 2]

Starts its own redis-server (free port), writes 10,000 users' features, a k=7 model
to a temp dir, then alternates wrk runs (``wrk -t1 -c32``) against the bare endpoint
and ``GET /v1/users/{id}/segment`` (random ids, API key on), and a batch run
(``POST /v1/users/segments:batch`` with 100 random ids). Each server is one uvicorn
worker with uvloop + httptools and no access log. Prints a Markdown table; the
ratio lookup/bare is the figure to compare across machines.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

USERS = 10_000
KEY = "bench-key-123456"

LOOKUP_LUA = f"""
wrk.headers["X-API-Key"] = "{KEY}"
request = function()
  return wrk.format("GET", "/v1/users/u" .. math.random(0, {USERS - 1}) .. "/segment")
end
"""
BARE_LUA = """
request = function()
  return wrk.format("GET", "/bare/u" .. math.random(0, 9999))
end
"""
BATCH_LUA = f"""
wrk.method = "POST"
wrk.headers["X-API-Key"] = "{KEY}"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local ids = {{}}
  for i = 1, 100 do ids[i] = '"u' .. math.random(0, {USERS - 1}) .. '"' end
  return wrk.format(nil, "/v1/users/segments:batch", nil,
                    '{{"user_ids": [' .. table.concat(ids, ",") .. ']}}')
end
"""


def build_model(directory: Path) -> None:
    from segstream.contract import FEATURE_SPEC
    from segstream.segment_model import Preprocessor, SegmentModel

    d, k = len(FEATURE_SPEC), 7
    rng = np.random.default_rng(0)
    heavy = np.array([f.heavy_tailed for f in FEATURE_SPEC.features])
    pre = Preprocessor(heavy, np.zeros(d), np.ones(d))
    x = np.abs(rng.normal(3, 2, (2000, d)))
    from training.baseline import build_baseline

    centroids = rng.normal(1, 1, (k, d))
    labels = rng.integers(0, k, 2000)
    model = SegmentModel(FEATURE_SPEC.version, FEATURE_SPEC.names, pre, centroids,
                         tuple(range(1, k + 1)), tuple(f"Persona {i}" for i in range(k)),
                         profiles=[{"size": 100 + i, "share": 1 / k} for i in range(k)],
                         baseline=build_baseline(x, labels, rng.uniform(0, 3, 2000),
                                                 tuple(range(1, k + 1))))
    model.save(directory)


def fill_redis(url: str) -> None:
    import redis

    from segstream.online_store import encode_record, feature_key

    client = redis.Redis.from_url(url)
    rng = np.random.default_rng(1)
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for i in range(USERS):
        vec = np.abs(rng.normal(3, 2, 19))
        pipe.hset(feature_key(f"u{i}"), mapping=encode_record(vec, last_event_ms=now,
                                                              updated_ms=now))
    pipe.execute()
    client.close()


def wait_http(url: str, timeout_s: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def run_wrk(url: str, script: Path, duration: int, connections: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True)
    text = out.stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            raise RuntimeError(f"no {label} in wrk output:\n{text}")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    return {"rps": rps, "p50": ms("50%"), "p99": ms("99%"),
            "non2xx": float(errors.group(1)) if errors else 0.0,
            "socket_errors": 1.0 if sock else 0.0}


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "benchmarks.serving_app", *argv],
                                stdout=out, stderr=subprocess.STDOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch-connections", type=int, default=4)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: sudo apt-get install -y wrk")
    from segstream.stack import free_port, start_redis, stop_service

    tmp = Path(tempfile.mkdtemp(prefix="segstream-bench-"))
    redis_svc = start_redis(free_port(), tmp / "redis", tmp / "redis.log")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        fill_redis(redis_svc.address)
        build_model(tmp / "model")
        bare_port, api_port = free_port(), free_port()
        procs.append(start(["--kind", "bare", "--port", str(bare_port)], tmp / "bare.log"))
        procs.append(start(["--kind", "api", "--port", str(api_port), "--model-dir",
                            str(tmp / "model"), "--redis-url", redis_svc.address,
                            "--data-dir", str(tmp / "data")], tmp / "api.log"))
        wait_http(f"http://127.0.0.1:{bare_port}/bare/x")
        wait_http(f"http://127.0.0.1:{api_port}/readyz")
        scripts = {}
        for name, lua in (("bare", BARE_LUA), ("lookup", LOOKUP_LUA), ("batch", BATCH_LUA)):
            scripts[name] = tmp / f"{name}.lua"
            scripts[name].write_text(lua)
        urls = {"bare": f"http://127.0.0.1:{bare_port}",
                "lookup": f"http://127.0.0.1:{api_port}",
                "batch": f"http://127.0.0.1:{api_port}"}
        run_wrk(urls["lookup"], scripts["lookup"], 2, args.connections)  # warm-up
        run_wrk(urls["bare"], scripts["bare"], 2, args.connections)
        results: dict[str, list[dict[str, float]]] = {"bare": [], "lookup": [], "batch": []}
        for _ in range(args.rounds):
            for name in ("bare", "lookup"):
                results[name].append(run_wrk(urls[name], scripts[name], args.duration,
                                             args.connections))
            results["batch"].append(run_wrk(urls["batch"], scripts["batch"], args.duration,
                                            args.batch_connections))
        report(results, args)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        stop_service(redis_svc)
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: dict[str, list[dict[str, float]]], args: Any) -> None:
    med = {name: {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
           for name, runs in results.items()}
    print(f"\nmachine: {platform.node()} {platform.machine()}, "
          f"{len(__import__('os').sched_getaffinity(0))} cpus, Python "
          f"{platform.python_version()}; median of {args.rounds} x {args.duration}s runs")
    print("\n| endpoint | connections | rps | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|---|")
    for name, conns in (("bare", args.connections), ("lookup", args.connections),
                        ("batch", args.batch_connections)):
        m = med[name]
        label = {"bare": "bare FastAPI JSON", "lookup": "GET /v1/users/{id}/segment",
                 "batch": "POST segments:batch (100 ids)"}[name]
        print(f"| {label} | {conns} | {m['rps']:,.0f} | {m['p50']:.2f} | {m['p99']:.2f} | "
              f"{m['non2xx']:.0f} |")
    print(f"\nlookup / bare rps ratio: {med['lookup']['rps'] / med['bare']['rps']:.2f}")
    for name, runs in results.items():
        print(f"{name} runs (rps): {[round(r['rps']) for r in runs]}")


if __name__ == "__main__":
    main()
