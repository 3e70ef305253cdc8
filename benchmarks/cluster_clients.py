"""HMGET of a user's record over a 3-master Redis Cluster, by client: redis-py's asyncio
``RedisCluster`` (what the API uses with ``redis_cluster=true``) vs valkey-glide, if
installed. 32 concurrent tasks in one process, 10,000 keys, 5 s each; loopback.

    .venv/bin/python -m benchmarks.cluster_clients        # redis-py only
    pip install 'valkey-glide>=2.6,<3' into a venv with this repo's deps, then the same

Decides whether a faster cluster client is worth a dependency (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

KEYS, CONCURRENCY, SECONDS = 10_000, 32, 5.0
FIELDS = ["agg", "n", "ts", "upd"]


async def measure(get: Callable[[str], Awaitable[Any]], label: str) -> None:
    done, latencies = 0, []
    stop = time.monotonic() + SECONDS

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop:
            key = f"seg:features:{{u{random.randrange(KEYS)}}}"
            t = time.perf_counter()
            reply = await get(key)
            latencies.append(time.perf_counter() - t)
            if reply[0] is None:
                raise RuntimeError(f"{label}: {key} has no record")
            done += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    latencies.sort()
    print(f"| {label} | {done / SECONDS:,.0f} | {latencies[len(latencies) // 2] * 1e3:.2f} | "
          f"{latencies[int(len(latencies) * 0.99)] * 1e3:.2f} |")


async def run_all(host: str, port: int) -> None:
    import redis.asyncio

    print(f"\n| client ({CONCURRENCY} concurrent HMGET) | ops/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    rc = redis.asyncio.RedisCluster(host=host, port=port)
    await rc.initialize()
    await measure(lambda k: rc.hmget(k, *FIELDS), "redis-py asyncio RedisCluster")
    await rc.aclose()
    try:
        from glide import GlideClusterClient, GlideClusterClientConfiguration, NodeAddress
    except ImportError:
        print("\n(valkey-glide is not installed: its row is missing)")
        return
    config = GlideClusterClientConfiguration([NodeAddress(host, port)])
    glide = await GlideClusterClient.create(config)
    await measure(lambda k: glide.hmget(k, FIELDS), "valkey-glide GlideClusterClient")
    await glide.close()


def main() -> None:
    import redis

    from segstream.sources.clusters import redis_cluster

    with tempfile.TemporaryDirectory() as tmp, redis_cluster(Path(tmp)) as seeds:
        host, port = seeds[0].split(":")
        client = redis.RedisCluster(host=host, port=int(port))
        pipe = client.pipeline()
        for i in range(KEYS):  # records of the stored size (917 B) and the hash layout
            pipe.hset(f"seg:features:{{u{i}}}",
                      mapping={"agg": b"x" * 917, "n": 5, "ts": 1, "upd": 2})
        pipe.execute()
        client.close()
        asyncio.run(run_all(host, int(port)))


if __name__ == "__main__":
    main()
