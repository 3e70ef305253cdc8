"""The streaming step of ``segstream demo``: the job once over `events`, then a count."""

from __future__ import annotations

from rich.console import Console

from segstream.config import Settings


def step_stream(settings: Settings, console: Console) -> None:
    """Run ``segstream stream --available-now`` in-process; print users with records."""
    import redis

    from segstream.stack import endpoints
    from streaming.job import run
    from streaming.session import get_spark

    console.rule("streaming aggregates (Spark, available-now) -> Redis, features topic, Parquet")
    ep = endpoints(settings)
    with console.status("running the streaming job over everything on "
                        f"{settings.topic_events} (Spark local)..."):
        spark = get_spark(settings, "segstream-demo")
        try:
            run(spark, settings, bootstrap=ep.kafka_bootstrap, redis_url=ep.redis_url,
                available_now=True)
        finally:
            spark.stop()
    client = redis.Redis.from_url(ep.redis_url)
    users = sum(1 for _ in client.scan_iter("seg:features:*", count=1000))
    console.print(f"  {users:,} users have an aggregate record in Redis (seg:features:*), "
                  f"evaluated as of any time by readers; history in {settings.history_dir}; "
                  f"rejected and late records on {settings.topic_dlq}")
