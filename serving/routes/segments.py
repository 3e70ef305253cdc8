"""The segment catalogue (persona, description, KPIs, the members' medians and
quartiles, RFM groups, content templates) and the migrations between segments and
between RFM groups in a window of time."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query

from segstream.adapters.redis_keys import CHURN_SEGMENTS_KEY
from segstream.core import rfm
from segstream.core.times import format_time
from segstream.serving import metrics, migrations
from segstream.serving.deps import State
from segstream.serving.errors import InvalidInput, NotFound
from segstream.serving.predict import Served
from segstream.serving.records import parse_as_of, wall_ms
from segstream.serving.redis_pipe import RedisCommandError, RedisUnavailable
from segstream.serving.schemas import (
    UNAUTHORIZED,
    Catalogue,
    Migrations,
    SegmentInfo,
    error_responses,
)
from segstream.serving.state import AppState

router = APIRouter(prefix="/v1", tags=["catalogue"])
#: Profile entries with a field of their own, and the centroid, which is not shown
_PROMOTED = frozenset({"size", "share", "name", "description", "kpis", "members",
                       "rfm_groups", "centroid_z"})


def _rfm_groups(counts: dict[str, Any]) -> list[dict[str, Any]]:
    if not counts:
        return []
    total = sum(int(n) for n in counts.values())
    return [{"group": g, "users": int(counts.get(g, 0)),
             "share": int(counts.get(g, 0)) / total if total else None,
             "definition": rfm.DEFINITIONS[g]} for g in rfm.GROUPS]


def _flat(reply: Any) -> dict[bytes, bytes]:
    """HGETALL's reply as a dict (a flat field/value list from the pipe; a dict or str
    from other clients)."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        items = list(zip(reply[::2], reply[1::2], strict=True))
    return {(k if isinstance(k, bytes) else str(k).encode()):
            (v if isinstance(v, bytes) else str(v).encode()) for k, v in items}


async def churn_summary(state: AppState, served: Served) -> dict[int, dict[str, Any]]:
    """Per segment id, the churn risk of its members as of the last sweep (written by the
    change detector into ``CHURN_SEGMENTS_KEY``); empty when there is none for this
    segment model version, or Redis does not answer (the catalogue needs no Redis)."""
    try:
        raw = _flat(await state.redis.execute("HGETALL", CHURN_SEGMENTS_KEY) or [])
    except (RedisUnavailable, RedisCommandError):
        metrics.REDIS_ERRORS.labels("churn_segments").inc()
        return {}
    if raw.get(b"segment_model_version", b"").decode() != served.version:
        return {}
    common = {"as_of": format_time(int(raw[b"as_of_ms"])),
              "measured_at": format_time(int(raw[b"measured_ms"])),
              "churn_model_version": raw[b"churn_model_version"].decode(),
              "label": raw[b"label"].decode(),
              "horizon_days": float(raw[b"horizon_days"])}
    out = {}
    for key, value in raw.items():
        if key.startswith(b"s:"):
            out[int(key[2:])] = {**orjson.loads(value), **common}
    return out


def _info(state: AppState, served: Served, row: int,
          churn: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    model = served.model
    profile = dict(model.profiles[row]) if row < len(model.profiles) else {}
    sid, persona = int(model.segment_ids[row]), model.personas[row]
    size, share = profile.get("size"), profile.get("share")
    return {
        "segment_id": sid, "persona": persona, "description": profile.get("description"),
        "size": None if size is None else int(size),
        "share": None if share is None else float(share),
        "kpis": {k: v for k, v in (profile.get("kpis") or {}).items()
                 if v is None or isinstance(v, int | float)},
        "members": dict(profile.get("members") or {}),
        "rfm_groups": _rfm_groups(profile.get("rfm_groups") or {}),
        "profile": {k: v for k, v in profile.items() if k not in _PROMOTED},
        "templates": {name: list(p.templates(sid, persona))
                      for name, p in state.mapping.placements.items()},
        "churn": (churn or {}).get(sid),
    }


@router.get("/segments", response_model=Catalogue,
            responses=error_responses({**UNAUTHORIZED, 503: "No model loaded yet."}))
async def catalogue(state: State) -> dict[str, Any]:
    """Every segment of the champion model, with its members' churn risk as of the change
    detector's last sweep."""
    served = state.served()
    churn = await churn_summary(state, served)
    return {"model_version": served.version,
            "segments": [_info(state, served, i, churn) for i in range(served.model.k)]}


_TIME = ("ISO 8601 (no offset: UTC) or epoch seconds/milliseconds, the forms `as_of` "
         "takes")


@router.get("/segments/migrations", response_model=Migrations,
            responses=error_responses({
                **UNAUTHORIZED,
                422: "A malformed `since` or `until`, `until` not after `since`, or a "
                     "window over 31 days; the body names the field.",
                503: "Redis unavailable."}))
async def segment_migrations(
    state: State,
    since: Annotated[str, Query(description=f"Start of the window: {_TIME}. Rounded down "
                                "to the hour.", examples=["2026-12-01T00:00:00Z"])],
    until: Annotated[str | None, Query(description=f"End of the window, exclusive: {_TIME}. "
                                       "Rounded up to the hour; default now.",
                                       examples=["2026-12-02T00:00:00Z"])] = None,
) -> dict[str, Any]:
    """The segment changes and RFM-group changes the change detector published with a
    change time (`at`) in the window, as from -> to matrices. The counts are the
    published changes: each change once, counted when the detector committed it."""
    start_ms = parse_as_of(since, "query.since")
    end_ms = parse_as_of(until, "query.until")
    if end_ms is None:
        end_ms = state.now_ms() or wall_ms()
    assert start_ms is not None
    if end_ms <= start_ms:
        raise InvalidInput(f"query.until: {format_time(end_ms)} is not after since "
                           f"({format_time(start_ms)})", field="query.until")
    start, end = migrations.window(start_ms, end_ms)
    if end - start > migrations.MAX_WINDOW_MS:
        days = migrations.MAX_WINDOW_MS // 86_400_000
        raise InvalidInput(f"query.until: the window {format_time(start)} to "
                           f"{format_time(end)} is {(end - start) / 86_400_000:.1f} days "
                           f"(whole hours); at most {days} days are counted at once",
                           field="query.until")
    replies = await state.redis_call("migrations", migrations.read_commands(start, end))
    return {"since": format_time(start), "until": format_time(end),
            "bucket_s": migrations.BUCKET_MS // 1000, **migrations.matrix(replies)}


# `:int`: the path matches digits only, so GET /v1/segments/assign is the 405 of a
# POST-only resource (not a segment id "assign"), and other ids are 404 unmatched paths
@router.get("/segments/{segment_id:int}", response_model=SegmentInfo,
            responses=error_responses({
                **UNAUTHORIZED, 404: "No such segment in the champion model (or an id that "
                "is not a non-negative integer: no such path).",
                422: "Not reached: the path matches digits only.",
                503: "No model loaded yet."}))
async def segment(segment_id: Annotated[int, Path(ge=0)], state: State) -> dict[str, Any]:
    """One segment of the champion model."""
    served = state.served()
    row = served.row_of.get(segment_id)
    if row is None:
        raise NotFound(f"segment {segment_id} is not in model version {served.version}; "
                       f"it has {sorted(served.row_of)}", field="path.segment_id")
    return _info(state, served, row, await churn_summary(state, served))
