"""Serving benchmark: lookup rps and latency vs a bare FastAPI endpoint, same run; and
the rate of the change detector's re-scoring sweep over the online store.

    .venv/bin/python -m benchmarks.serving [--duration 10] [--rounds 2] [--skip-sweep]
                                           [--redis-cluster]

Starts its own redis-server (free port), folds a generated log of 10,000 users into
their aggregate records (``segstream.streaming.step``) and writes them as the streaming job's
sink does, builds a k=7 model on those users' features (with the feature params it
must record) in a temp dir, then alternates wrk runs (``wrk -t1 -c32``) against the
bare endpoint, ``GET /v1/users/{id}/segment`` and ``GET /v1/users/{id}/features``
(random ids, API key on; each evaluates the user's aggregates as of now on the
request path), and a batch run (``POST /v1/users/segments:batch`` with 100 random
ids). The lookup and the batch run again against a second API that also holds a churn
model (training's fit on these users with a synthetic label: the scoring cost of a
real artefact), so each has a row with churn risk and one without. Each server is one
uvicorn worker with uvloop + httptools and no access log.
Prints a Markdown table; the ratio lookup/bare is the figure to compare across
machines.

``--redis-cluster``: the same against a 3-master Redis Cluster on loopback
(``segstream/clusters.py``, redis-server + ``redis-cli --cluster create``), which the API
reaches with redis-py's asyncio cluster client (the path of ``redis_cluster=true``).

Sweep (unless ``--skip-sweep``): an embedded broker for the detector's producer, then
``ChangeDetector.sweep`` over the same 10,000 records three times: the first records
everyone's first segment (a write per user), the second is the steady state (reads
only), the third is 90 days later (time alone moves many users: changes published); then the
same three from fresh state with the churn model too.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from segstream.app.loadtest import run_wrk
from segstream.serving.redis_client import CLIENTS

USERS = 10_000
KEY = "bench-key-123456"

LOOKUP_LUA = f"""
wrk.headers["X-API-Key"] = "{KEY}"
request = function()
  return wrk.format("GET", "/v1/users/u" .. math.random(0, {USERS - 1}) .. "/segment")
end
"""
FEATURES_LUA = f"""
wrk.headers["X-API-Key"] = "{KEY}"
request = function()
  return wrk.format("GET", "/v1/users/u" .. math.random(0, {USERS - 1}) .. "/features")
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


def user_records() -> tuple[list[str], np.ndarray]:
    """Aggregates of ``USERS`` generated users, ids ``u0``..: folded by the streaming step."""
    from segstream.config import Settings
    from segstream.sources.generator import GeneratorConfig, generate
    from segstream.streaming.step import log_aggregates, valid_frame

    # the generator's users are unevenly active: ask for more, keep the first USERS seen
    log = generate(GeneratorConfig(users=USERS * 14 // 10, events=28 * USERS, seed=1,
                                   days=30))
    frame = valid_frame(log.values, now_ms=log.end_ms + 1)
    users = {u: f"u{i}" for i, u in enumerate(frame["user_id"].unique()[:USERS])}
    if len(users) < USERS:
        raise RuntimeError(f"the generated log has {len(users)} users, fewer than {USERS}")
    frame = frame[frame["user_id"].isin(users)].assign(user_id=lambda f: f["user_id"].map(users))
    state = log_aggregates(frame, watermark_ms=600_000, params=Settings().feature_params())
    return [str(u) for u in state.users], state.aggs


def build_model(directory: Path, aggs: np.ndarray) -> None:
    """k=7 centroids on the users' features as of now (log1p, robust scale), recording
    the feature params the API checks."""
    from segstream.config import Settings
    from segstream.core.aggregates import evaluate
    from segstream.core.contract import FEATURE_SPEC
    from segstream.core.segment_model import Preprocessor, SegmentModel, squared_distances
    from segstream.training.baseline import build_baseline

    params, k = Settings().feature_params(), 7
    x = evaluate(aggs, int(time.time() * 1000), params)
    heavy = np.array([f.heavy_tailed for f in FEATURE_SPEC.features])
    logged = np.where(heavy, np.log1p(np.maximum(x, 0)), x)
    spread = logged.std(0)
    pre = Preprocessor(heavy, np.median(logged, 0), np.where(spread > 0, spread, 1.0))
    rng = np.random.default_rng(0)
    z = pre.transform(x)
    centroids = z[rng.choice(len(z), k, replace=False)]
    labels = squared_distances(z, centroids).argmin(1)
    model = SegmentModel(FEATURE_SPEC.version, FEATURE_SPEC.names, pre, centroids,
                         tuple(range(1, k + 1)), tuple(f"Persona {i}" for i in range(k)),
                         profiles=[{"size": 100 + i, "share": 1 / k} for i in range(k)],
                         baseline=build_baseline(x, labels, rng.uniform(0, 3, len(x)),
                                                 tuple(range(1, k + 1))),
                         info={"feature_params": params.describe()})
    model.save(directory)


def build_churn_model(directory: Path, aggs: np.ndarray) -> None:
    """A churn artefact of training's own fit (``training/churn_fit.py``: its trees and
    calibration, so scoring costs what a real one does) on the users' features as of now,
    with a synthetic label (long silences and falling engagement churn, with noise): the
    figures measure the scoring cost, not the model's quality."""
    from segstream.config import Settings
    from segstream.core.aggregates import evaluate
    from segstream.core.contract import FEATURE_SPEC
    from training.churn_data import ChurnExamples
    from training.churn_fit import fit_churn

    params, now = Settings().feature_params(), int(time.time() * 1000)
    x = evaluate(aggs, now, params)
    rng = np.random.default_rng(3)
    recency = x[:, FEATURE_SPEC.index("recency_days")]
    trend = np.nan_to_num(x[:, FEATURE_SPEC.index("engagement_trend")])
    logit = 0.4 * (recency - np.median(recency)) - trend + rng.normal(0, 1, len(x))
    examples = ChurnExamples(user_ids=np.array([f"u{i}" for i in range(len(x))], dtype=object),
                             X=x, y=(logit > 0).astype(np.int8),
                             as_of_ms=np.full(len(x), now, dtype=np.int64), label="activity",
                             horizon_days=14.0, feature_params=params.describe(),
                             source="benchmark users, synthetic label")
    fit_churn(examples).save(directory)


def fill_redis(url: str, users: list[str], aggs: np.ndarray, cluster: bool = False) -> None:
    from segstream.adapters.online_store import encode_record
    from segstream.adapters.redis_connect import sync_redis
    from segstream.adapters.redis_keys import feature_key
    from segstream.config import Settings

    params = Settings().feature_params()
    client = sync_redis(url, cluster=cluster)
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for user, agg in zip(users, aggs, strict=True):
        pipe.hset(feature_key(user), mapping=encode_record(agg, params, updated_ms=now))
    pipe.execute()
    client.close()


def measure_sweeps(redis_url: str, model_dir: Path, churn_dir: Path | None = None
                   ) -> list[dict[str, float]]:
    """Three sweeps of the detector over every record (see the module docstring); with
    ``churn_dir``, scoring churn too (bands, high-band events, the per-segment hash),
    from fresh state."""
    import redis

    from benchmarks.common import kafka_broker
    from segstream.adapters.kafka import ensure_topics
    from segstream.config import Settings
    from segstream.core.segment_model import SegmentModel
    from segstream.serving.changes import ChangeDetector
    from segstream.serving.churn import ChurnHolder, StaticChurnSource
    from segstream.serving.model_holder import ModelHolder
    from segstream.serving.model_source import StaticSource

    out = []
    with kafka_broker() as bootstrap:
        ensure_topics(bootstrap, ["features", "segment-changes"], 1)
        settings = Settings(redis_url=redis_url, kafka_bootstrap=bootstrap,
                            segment_min_dwell_s=0)
        holder = ModelHolder(StaticSource(SegmentModel.load(model_dir), "1"),
                             settings.feature_params())
        holder.refresh()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match="seg:segment:*", count=1000):  # fresh state
            client.delete(key)
        churn = None
        if churn_dir is not None:
            from segstream.core.churn_model import ChurnModel

            churn = ChurnHolder(StaticChurnSource(ChurnModel.load(churn_dir), "1"),
                                settings.feature_params())
            churn.refresh()
        detector = ChangeDetector(settings, holder, client, bootstrap, churn)
        now = int(time.time() * 1000)
        for label, at in (("first (records every user's segment)", now),
                          ("steady (nothing changed)", now + 60_000),
                          ("90 days later (time alone moves users)", now + 90 * 86_400_000)):
            start = time.perf_counter()
            changes = detector.sweep(at)
            seconds = time.perf_counter() - start
            if churn is not None:
                label += ", with churn"
            out.append({"label": label, "seconds": seconds, "changes": changes,  # type: ignore[dict-item]
                        "users_per_s": USERS / seconds})
        detector.close()
        client.close()
    return out


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
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--redis-cluster", action="store_true",
                        help="serve from a 3-master Redis Cluster (no sweep)")
    parser.add_argument("--redis-client", default="auto", choices=CLIENTS,
                        help="the API's Redis client (auto: own for one plain server, "
                        "valkey-glide for a cluster or TLS)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: sudo apt-get install -y wrk")
    from segstream.sources.stack import free_port, start_redis, stop_service

    tmp = Path(tempfile.mkdtemp(prefix="segstream-bench-"))
    cluster = contextlib.ExitStack()
    if args.redis_cluster:
        from segstream.sources.clusters import redis_cluster

        seeds = cluster.enter_context(redis_cluster(tmp / "cluster"))
        redis_url, redis_svc = f"redis://{seeds[0]}/0", None
        args.skip_sweep = True  # the sweep's figure does not depend on the topology
    else:
        redis_svc = start_redis(free_port(), tmp / "redis", tmp / "redis.log")
        redis_url = redis_svc.address
    procs: list[subprocess.Popen[bytes]] = []
    try:
        users, aggs = user_records()
        fill_redis(redis_url, users, aggs, cluster=args.redis_cluster)
        build_model(tmp / "model", aggs)
        build_churn_model(tmp / "churn", aggs)
        bare_port, api_port, churn_port = free_port(), free_port(), free_port()
        procs.append(start(["--kind", "bare", "--port", str(bare_port)], tmp / "bare.log"))
        procs.append(start(["--kind", "api", "--port", str(api_port), "--model-dir",
                            str(tmp / "model"), "--redis-url", redis_url,
                            "--data-dir", str(tmp / "data"), "--redis-client",
                            args.redis_client,
                            *(["--redis-cluster"] if args.redis_cluster else [])],
                           tmp / "api.log"))
        procs.append(start(["--kind", "api", "--port", str(churn_port), "--model-dir",
                            str(tmp / "model"), "--churn-dir", str(tmp / "churn"),
                            "--redis-url", redis_url, "--data-dir", str(tmp / "data-churn"),
                            "--redis-client", args.redis_client,
                            *(["--redis-cluster"] if args.redis_cluster else [])],
                           tmp / "api-churn.log"))
        wait_http(f"http://127.0.0.1:{bare_port}/bare/x")
        wait_http(f"http://127.0.0.1:{api_port}/readyz")
        wait_http(f"http://127.0.0.1:{churn_port}/readyz")
        scripts = {}
        for name, lua in (("bare", BARE_LUA), ("lookup", LOOKUP_LUA),
                          ("features", FEATURES_LUA), ("batch", BATCH_LUA)):
            scripts[name] = tmp / f"{name}.lua"
            scripts[name].write_text(lua)
        urls = {"bare": f"http://127.0.0.1:{bare_port}",
                "lookup": f"http://127.0.0.1:{api_port}",
                "features": f"http://127.0.0.1:{api_port}",
                "batch": f"http://127.0.0.1:{api_port}",
                "lookup_churn": f"http://127.0.0.1:{churn_port}",
                "batch_churn": f"http://127.0.0.1:{churn_port}"}
        run_wrk(urls["lookup"], scripts["lookup"], 2, args.connections)  # warm-up
        run_wrk(urls["bare"], scripts["bare"], 2, args.connections)
        results: dict[str, list[dict[str, float]]] = {
            "bare": [], "lookup": [], "lookup_churn": [], "features": [], "batch": [],
            "batch_churn": []}
        run_wrk(urls["lookup_churn"], scripts["lookup"], 2, args.connections)
        for _ in range(args.rounds):
            for name in ("bare", "lookup", "lookup_churn", "features"):
                results[name].append(run_wrk(urls[name], scripts[name.split("_")[0]],
                                             args.duration, args.connections))
            for name in ("batch", "batch_churn"):
                results[name].append(run_wrk(urls[name], scripts["batch"], args.duration,
                                             args.batch_connections))
        for p in procs:  # the servers are done: the sweep gets the cores
            p.terminate()
            p.wait(10)
        procs.clear()
        sweeps = [] if args.skip_sweep else [
            *measure_sweeps(redis_url, tmp / "model"),
            *measure_sweeps(redis_url, tmp / "model", tmp / "churn")]
        report(results, sweeps, args)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        if redis_svc is not None:
            stop_service(redis_svc)
        cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: dict[str, list[dict[str, float]]], sweeps: list[dict[str, Any]],
           args: Any) -> None:
    med = {name: {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
           for name, runs in results.items()}
    print(f"\nmachine: {platform.node()} {platform.machine()}, "
          f"{len(__import__('os').sched_getaffinity(0))} cpus, Python "
          f"{platform.python_version()}; median of {args.rounds} x {args.duration}s runs; "
          f"Redis {'Cluster (3 masters)' if args.redis_cluster else 'one server'}, "
          f"client {args.redis_client}")
    print("\n| endpoint | connections | rps | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|---|")
    for name, conns in (("bare", args.connections), ("lookup", args.connections),
                        ("lookup_churn", args.connections),
                        ("features", args.connections), ("batch", args.batch_connections),
                        ("batch_churn", args.batch_connections)):
        m = med[name]
        label = {"bare": "bare FastAPI JSON", "lookup": "GET /v1/users/{id}/segment",
                 "lookup_churn": "GET /v1/users/{id}/segment + churn risk",
                 "features": "GET /v1/users/{id}/features",
                 "batch": "POST segments:batch (100 ids)",
                 "batch_churn": "POST segments:batch (100 ids) + churn risk"}[name]
        print(f"| {label} | {conns} | {m['rps']:,.0f} | {m['p50']:.2f} | {m['p99']:.2f} | "
              f"{m['non2xx']:.0f} |")
    print(f"\nlookup / bare rps ratio: {med['lookup']['rps'] / med['bare']['rps']:.2f}; "
          f"features / bare: {med['features']['rps'] / med['bare']['rps']:.2f}; "
          f"lookup with churn / without: rps "
          f"{med['lookup_churn']['rps'] / med['lookup']['rps']:.2f}, p99 "
          f"{med['lookup_churn']['p99']:.2f} vs {med['lookup']['p99']:.2f} ms")
    for name, runs in results.items():
        print(f"{name} runs (rps): {[round(r['rps']) for r in runs]}")
    if sweeps:
        print(f"\n| sweep over {USERS:,} records | seconds | users/s | us/user | changes |")
        print("|---|---|---|---|---|")
        for sw in sweeps:
            print(f"| {sw['label']} | {sw['seconds']:.2f} | {sw['users_per_s']:,.0f} | "
                  f"{1e6 / sw['users_per_s']:.0f} | {sw['changes']:,} |")


if __name__ == "__main__":
    main()
