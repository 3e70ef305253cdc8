"""The streaming steps of ``segstream demo``: the job over `events` (available-now)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console

from segstream.adapters.redis_keys import FEATURES_PATTERN
from segstream.config import Settings


def _users(redis_url: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return sum(1 for _ in client.scan_iter(FEATURES_PATTERN, count=1000))
    finally:
        client.close()


#: Records per micro-batch of the first run: about a day of the demo's events, so that
#: the Parquet history holds a record per user per day and snapshots "as of T" (the
#: churn model's training rows) are true to the day, not to one 25-day batch.
DAY_OF_RECORDS = 4000


def step_stream(settings: Settings, console: Console) -> None:
    """Run ``segstream stream --available-now`` in-process, in micro-batches of about a
    day; print users with records."""
    daily = settings.model_copy(update={"stream_max_records_per_trigger": DAY_OF_RECORDS})
    stream_parts(daily, console, [lambda: "everything on the topic, a day a batch"])


def stream_parts(settings: Settings, console: Console, parts: Sequence[Callable[[], str]]
                 ) -> None:
    """For each part: call it (it sends records and names them), then run the job
    available-now over what arrived. One Spark session for all parts."""
    from segstream.adapters.endpoints import endpoints
    from segstream.streaming.job import run
    from segstream.streaming.session import get_spark

    console.rule("streaming aggregates (Spark, available-now) -> Redis, features topic, Parquet")
    ep = endpoints(settings)
    with console.status("starting Spark (local)..."):
        spark = get_spark(settings, "segstream-demo")
    try:
        for part in parts:
            what = part()
            with console.status(f"streaming {what}..."):
                run(spark, settings, bootstrap=ep.kafka_bootstrap, redis_url=ep.redis_url,
                    available_now=True)
            console.print(f"  streamed {what}: {_users(ep.redis_url):,} users have an "
                          "aggregate record in Redis (seg:features:*)")
    finally:
        spark.stop()
    console.print(f"  evaluated as of any time by readers; history in {settings.history_dir}; "
                  f"rejected and late records on {settings.topic_dlq}")
