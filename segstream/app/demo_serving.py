"""The demo's serving steps: the change detector bounded on the stream's clock, the
webhook dispatcher to a local receiver, then the API (auth disabled, said out loud):
lookups, one user's features as of now, a user whom time alone moved to another segment
(no new event), and a short lookup load.

The API keeps running after the demo as a service of the local stack, so
``segstream stack status`` shows it and ``segstream stack down`` stops it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from segstream.adapters.redis_keys import FEATURES_PATTERN, user_of_feature_key
from segstream.config import Settings
from segstream.core.times import format_time


def start_api(settings: Settings, console: Console) -> dict[str, Any]:
    from segstream.adapters.endpoints import Service, endpoints, port_answers, running_service
    from segstream.sources.stack import add_service, free_port

    running = running_service(settings, "api")
    if running is not None:
        console.print(f"  API already running at {running.address} (pid {running.pid})")
        return {"pid": running.pid, "url": running.address, "log": running.log}
    port = settings.api_port
    if port_answers("127.0.0.1", port):
        port = free_port()
    log = settings.data_dir / "serving" / "api.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SEGSTREAM_API_AUTH_ENABLED": "false",
           "SEGSTREAM_REDIS_URL": endpoints(settings).redis_url,
           "SEGSTREAM_DATA_DIR": str(settings.data_dir)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "segstream.app.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    info: dict[str, Any] = {"pid": proc.pid, "port": port, "url": url, "log": str(log),
                            "auth": "disabled"}
    add_service(settings, Service("api", url, True, proc.pid, sys.executable, str(log)))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{info['url']}/readyz", timeout=2).status_code == 200:
                return info
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise RuntimeError(f"the API did not become ready; see {log}")


def step_serve(settings: Settings, console: Console) -> dict[str, Any]:
    """Start the API, show lookups, features and a lapsed user; returns summary lines."""
    import redis

    from segstream.adapters.endpoints import endpoints

    console.rule("serving: the API")
    from segstream.serving.model_source import RegistrySource

    if RegistrySource(settings).champion_version() is None:
        console.print("  no champion model in the registry yet (the training step registers "
                      "one); skipping the API")
        return {}
    console.print("  [yellow]API key auth is DISABLED for the demo[/yellow] "
                  "(SEGSTREAM_API_AUTH_ENABLED=false); production needs SEGSTREAM_API_KEYS")
    info = start_api(settings, console)
    url = info["url"]
    client = redis.Redis.from_url(endpoints(settings).redis_url)
    users = [user_of_feature_key(k)
             for k in client.scan_iter(FEATURES_PATTERN, count=100)][:4]
    table = Table("request", "segment", "persona", "p(segment)", "top reason",
                  title=f"example lookups against {url} (as of now)")
    for user in [*users, "no-such-user"]:
        path = f"/v1/users/{user}/segment" + ("?default=true" if user == "no-such-user" else "")
        body = httpx.get(url + path, timeout=5).json()
        if "error" in body:
            table.add_row(f"GET {path}", "-", body["error"]["message"], "-", "-")
            continue
        p = body["probabilities"][str(body["segment_id"])]
        reason = body["reasons"][0]["feature"] if body["reasons"] else "(cold start)"
        table.add_row(f"GET {path}", str(body["segment_id"]), body["persona"], f"{p:.2f}",
                      reason)
    console.print(table)
    if users:
        show_features(console, url, users[0])
    lapsed = show_lapsed(settings, console, url)
    summary: dict[str, Any] = {}
    summary.update(show_catalogue_and_migrations(console, url))
    if lapsed:
        summary["a user who lapsed (no new event)"] = (
            f"{lapsed['user_id']}: segment {lapsed['from_segment']} -> "
            f"{lapsed['to_segment']} ({lapsed['persona']}) at {lapsed['at']}"
            + (f"; {lapsed['risk']}" if "risk" in lapsed else ""))
    if users:
        summary["lookup load (one API worker)"] = lookup_load(url, users, settings.api_server)
    summary["API"] = f"{url}/docs (OpenAPI), {url}/metrics, log {info['log']}"
    from segstream.adapters.registry import Registry

    summary["MLflow UI"] = f"mlflow ui --backend-store-uri {Registry(settings).uri}"
    return summary


def show_catalogue_and_migrations(console: Console, url: str) -> dict[str, str]:
    """The catalogue's segments with their RFM groups, and the migration matrices of the
    changes published in the last 30 days (``GET /v1/segments``, ``/migrations``)."""
    segments = httpx.get(f"{url}/v1/segments", timeout=10).json()["segments"]
    names = {s["segment_id"]: s["persona"] for s in segments}
    table = Table("id", "persona", "RFM groups of its members (share)",
                  title="segments and their RFM groups (GET /v1/segments)")
    groups_line = []
    for s in segments:
        top = [g for g in sorted(s["rfm_groups"], key=lambda g: -g["users"]) if g["users"]]
        table.add_row(str(s["segment_id"]), s["persona"],
                      ", ".join(f"{g['group']} {g['share']:.0%}" for g in top[:3]))
        groups_line.append(f"{s['persona']}: {top[0]['group']}" if top else s["persona"])
    console.print(table)
    since = format_time(int(time.time() * 1000) - 30 * 86_400_000)
    m = httpx.get(f"{url}/v1/segments/migrations", params={"since": since}, timeout=10).json()
    moves = Table("from", "to", "users", title=f"segment migrations since {m['since'][:16]} "
                  "(GET /v1/segments/migrations)")
    for c in m["segments"][:8]:
        moves.add_row(f"{c['from_segment']} {names.get(c['from_segment'], '?')}",
                      f"{c['to_segment']} {names.get(c['to_segment'], '?')}", str(c["count"]))
    console.print(moves)
    groups = Table("from", "to", "users", title="RFM-group migrations, same window")
    for c in m["rfm_groups"][:8]:
        groups.add_row(c["from_group"], c["to_group"], str(c["count"]))
    console.print(groups)
    top_moves = ", ".join(f"{c['from_segment']}->{c['to_segment']} {c['count']}"
                          for c in m["segments"][:3])
    top_groups = ", ".join(f"{c['from_group']}->{c['to_group']} {c['count']}"
                           for c in m["rfm_groups"][:3])
    return {"top RFM group per segment": "; ".join(groups_line),
            "migrations (30 days)": f"{m['segment_changes']} segment changes ({top_moves}); "
                                    f"{m['rfm_group_changes']} RFM-group changes ({top_groups})"}


def lookup_load(url: str, users: list[str], server: str) -> str:
    """Segment lookups under wrk, with a bare FastAPI endpoint served by the API's own
    server (``server``) and measured the same way in the same run
    (``segstream.app.loadtest``, as ``benchmarks/serving.py``)."""
    from segstream.app.loadtest import lookup_against_bare

    try:
        r = lookup_against_bare(url, users, server=server)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        return f"not measured: {exc}"
    lk, bare = r["lookup"], r["bare"]
    errors = f", {lk['non2xx']:.0f} non-2xx" if lk["non2xx"] else ""
    return (f"{lk['rps']:,.0f} rps, p50 {lk['p50']:.1f} ms, p99 {lk['p99']:.1f} ms{errors}; "
            f"bare FastAPI {bare['rps']:,.0f} rps, p50 {bare['p50']:.1f} ms, p99 "
            f"{bare['p99']:.1f} ms ({lk['rps'] / bare['rps']:.2f}x its rps; both on "
            f"{r['server']}, {r['wrk']}, load and servers on this machine)")


def deliver_webhooks(settings: Settings, console: Console) -> int:
    """``segstream webhooks run`` bounded, to a receiver on loopback that checks every
    HMAC signature; returns the deliveries it accepted."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import redis

    from segstream.adapters.endpoints import endpoints
    from segstream.adapters.topic_reader import RedisOffsetReader
    from segstream.serving.webhooks import SIGNATURE_HEADER, Dispatcher, verify

    secret = "segstream-demo-receiver"  # a loopback receiver that lives for this step
    accepted: list[bytes] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            ok = verify(secret.encode(), self.headers.get(SIGNATURE_HEADER, ""), body)
            if ok:
                accepted.append(body)
            self.send_response(204 if ok else 401)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_address[1]}/segment-changed"
    from pydantic import SecretStr

    local = settings.model_copy(update={"webhook_urls": [hook],
                                        "webhook_secret": SecretStr(secret)})
    ep = endpoints(settings)
    client = redis.Redis.from_url(ep.redis_url)
    dispatcher = Dispatcher(local, client)
    reader = RedisOffsetReader(ep.kafka_bootstrap, settings.topic_segment_changes, client,
                               "demo-webhooks")
    try:
        with console.status(f"delivering segment changes to {hook} (signed)..."):
            while dispatcher.run_once(reader, timeout_ms=1000):
                pass
    finally:
        reader.close()
        dispatcher.close()
        server.shutdown()
    console.print(f"  {len(accepted):,} webhooks delivered to a local receiver, every "
                  "signature verified")
    return len(accepted)


SHOWN = ("recency_days", "tenure_days", "session_rate_short", "order_rate_long",
         "engagement_trend", "lifetime_spend", "active_days")


def show_features(console: Console, url: str, user: str) -> None:
    """``GET /v1/users/{user}/features`` as of now: a few of the values."""
    body = httpx.get(f"{url}/v1/users/{user}/features", timeout=5).json()
    if "error" in body:
        console.print(f"  features of {user}: {body['error']['message']}")
        return
    table = Table("feature", "value", title=f"GET /v1/users/{user}/features (as of "
                  f"{body['as_of']}, last event {body['last_event_at']})")
    for name in SHOWN:
        table.add_row(name, f"{body['features'][name]:.3f}")
    console.print(table)


def step_changes(settings: Settings, console: Console) -> int:
    """``segstream webhooks detect --available-now`` on the stream's clock (a replayed
    log ages as of its own time): segment changes, event- and time-triggered."""
    import redis

    from segstream.adapters.endpoints import endpoints
    from segstream.serving.changes import ChangeDetector
    from segstream.serving.model_holder import ModelHolder
    from segstream.serving.model_source import RegistrySource

    ep = endpoints(settings)
    replay = settings.model_copy(update={"clock": "event"})
    holder = ModelHolder(RegistrySource(replay), replay.feature_params())
    detector = ChangeDetector(replay, holder, redis.Redis.from_url(ep.redis_url),
                              ep.kafka_bootstrap)
    try:
        with console.status("change detector over the features topic (clock = stream "
                            f"time, a sweep every {replay.rescore_interval_s:.0f} s of it)..."):
            n = detector.run_available_now()
    finally:
        detector.close()
    console.print(f"  {n:,} segment changes published to {settings.topic_segment_changes}")
    return n


def show_lapsed(settings: Settings, console: Console, url: str) -> dict[str, Any] | None:
    """A recent change that time alone caused (with a churn champion served: the one whose
    churn risk the silence raised most; else the longest silent), and the user's features
    before it (at their last event) and at the change: no event in between, the features
    aged."""
    from segstream.adapters.endpoints import endpoints
    from segstream.adapters.topic_reader import read_topic

    changes = [orjson.loads(r.value) for r in read_topic(
        endpoints(settings).kafka_bootstrap, settings.topic_segment_changes) if r.value]
    lapsed = [c for c in changes if c.get("trigger") == "time"
              and "segment" in c.get("changed", ["segment"])]
    if not lapsed:
        console.print("  no user changed segment by time alone (nobody lapsed far enough "
                      "under this model)")
        return None

    def get(path: str, **params: Any) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{url}{path}", timeout=5, params=params).json()
        return body

    def risks_of(change: dict[str, Any]) -> tuple[Any, Any] | None:
        """The user's churn risk at their last event and at the change (None: no churn
        champion served, or the user is gone)."""
        user = change["user_id"]
        last = get(f"/v1/users/{user}/features").get("last_event_at")
        if last is None:
            return None
        risks = [get(f"/v1/users/{user}/segment", as_of=when).get("churn")
                 for when in (last, change["at"])]
        return (risks[0], risks[1]) if all(risks) else None

    def silence(change: dict[str, Any]) -> float:  # days without an event at the change
        body = get(f"/v1/users/{change['user_id']}/features", as_of=change["at"])
        return -1.0 if "error" in body else float(body["features"]["recency_days"])

    recent = lapsed[-50:]
    scored = [(c, r) for c in recent if (r := risks_of(c)) is not None]
    risks: tuple[Any, Any] | None = None
    if scored:  # a churn champion is served: the user whose risk the silence raised most
        change, risks = max(scored, key=lambda cr: cr[1][1]["risk"] - cr[1][0]["risk"])
    else:  # the longest silent of the recent ones
        change = max(recent, key=silence)
    user = change["user_id"]
    then = get(f"/v1/users/{user}/features")
    if "error" in then:
        console.print(f"  {user} lapsed, but: {then['error']['message']}")
        return None
    at_event = get(f"/v1/users/{user}/features", as_of=then["last_event_at"])
    at_change = get(f"/v1/users/{user}/features", as_of=change["at"])
    table = Table("feature", f"at the last event ({at_event['as_of']})",
                  f"at the change ({at_change['as_of']})",
                  title=f"{user}: segment {change['from_segment']} -> {change['to_segment']} "
                  f"({change['persona']}) with no new event")
    for name in SHOWN:
        table.add_row(name, f"{at_event['features'][name]:.3f}",
                      f"{at_change['features'][name]:.3f}")
    out = dict(change)
    if risks is not None:  # a churn champion is served: the risk the same silence gave
        before, after = risks
        table.add_row("churn risk", f"{before['risk']:.2f} ({before['band']})",
                      f"{after['risk']:.2f} ({after['band']})")
        out["risk"] = (f"churn risk {before['risk']:.2f} -> {after['risk']:.2f} with no new "
                       f"event; " + "; ".join(after["reasons"][:2]))
    console.print(table)
    return out
