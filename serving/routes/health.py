"""Liveness, readiness (model + Redis, else 503) and /metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from segstream.serving import metrics
from segstream.serving.deps import State
from segstream.serving.redis_pipe import RedisCommandError, RedisUnavailable
from segstream.serving.schemas import Health, Ready

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is alive (checks nothing else)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
async def readyz(state: State, response: Response) -> dict[str, Any]:
    """Ready when a model is loaded and Redis answers PING; 503 otherwise. The churn
    model is optional: its version and last error are shown, never required."""
    holder, served = state.holder, state.holder.current
    details: dict[str, Any] = {
        "model_version": served.version if served else None,
        "model_loaded_at": served.loaded_at if served else None,
        "registry_ok": holder.registry_ok,
        "registry_error": holder.last_error,
        "serving_last_good_model": served is not None and not holder.registry_ok,
        "drift_baseline_features": len(served.baseline.features) if served else 0,
        # optional: no churn model (or a refused one) never makes the API unready
        "churn_model_version": state.churn.current.version if state.churn.current else None,
        "churn_error": state.churn.last_error,
    }
    try:
        details["redis"] = (await state.redis.execute("PING")) in (b"PONG", "PONG")
    except (RedisUnavailable, RedisCommandError) as exc:
        metrics.REDIS_ERRORS.labels("ping").inc()
        details["redis"] = False
        details["redis_error"] = str(exc)
    ready = served is not None and bool(details["redis"])
    if not ready:
        response.status_code = 503
    return {"ready": ready, "details": details}


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(state: State) -> Response:
    served = state.holder.current
    if served is not None:
        metrics.MODEL_AGE.set(time.time() - served.loaded_at)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
