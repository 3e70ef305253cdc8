"""The app factory: lifespan (Redis, model, background tasks), routers, handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from segstream.adapters.endpoints import redis_address
from segstream.config import Settings
from segstream.core.contract import FEATURE_SPEC
from segstream.serving import metrics
from segstream.serving.churn import ChurnHolder, ChurnSource, RegistryChurnSource
from segstream.serving.deps import key_checker
from segstream.serving.drift_window import DriftWindow
from segstream.serving.errors import ServingError, install_handlers
from segstream.serving.middleware import ServingMiddleware
from segstream.serving.model_holder import ModelHolder
from segstream.serving.model_source import ModelSource, RegistrySource
from segstream.serving.personalization import load_mapping
from segstream.serving.redis_client import open_redis
from segstream.serving.redis_pipe import RedisCommandError, RedisUnavailable
from segstream.serving.rescore import CLOCK_STREAM, DETECTOR_KEY
from segstream.serving.routes import experiments, health, personalization, segments, users
from segstream.serving.state import AppState

log = logging.getLogger(__name__)
DRIFT_INTERVAL_S = 1.0
CLOCK_INTERVAL_S = 1.0


async def _drift_loop(state: AppState) -> None:
    current = state.holder.current
    while True:
        await asyncio.sleep(DRIFT_INTERVAL_S)
        served = state.holder.current
        if served is None:
            continue
        if served is not current:  # a new model: a new baseline, a fresh window
            current = served
            state.drift.reset()
            metrics.PSI.clear()
        psis, js = state.drift.compute(served.baseline, served.model.k)
        for name, value in psis.items():
            metrics.PSI.labels(name).set(value)
        if js is not None:
            metrics.SEGMENT_JS.set(js)
        metrics.DRIFT_WINDOW.set(state.drift.count)


async def _clock_loop(state: AppState) -> None:
    """clock = event: follow the stream time the change detector has reached."""
    while True:
        try:
            raw = await state.redis.execute("HGET", DETECTOR_KEY, CLOCK_STREAM)
            if raw is not None:
                state.stream_ms = int(raw)
        except (RedisUnavailable, RedisCommandError):
            metrics.REDIS_ERRORS.labels("clock").inc()
        await asyncio.sleep(CLOCK_INTERVAL_S)


def create_app(settings: Settings, source: ModelSource | None = None,
               churn_source: ChurnSource | None = None, redis_client: str = "auto"
               ) -> FastAPI:
    """Build the API. ``source`` defaults to the MLflow registry of training/; so does
    ``churn_source`` (the churn champion) when ``source`` does too. Given a ``source``
    and no ``churn_source``, the API has no churn model (its fields are null).
    ``redis_client``: one of ``redis_client.CLIENTS`` (the benchmark compares them)."""
    if settings.env == "prod" and not settings.api_auth_enabled:
        raise ValueError("api_auth_enabled=false is refused when env=prod")
    mapping = load_mapping(settings.api_personalization_file)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder = ModelHolder(source if source is not None else RegistrySource(settings),
                             settings.feature_params())
        churn_src = churn_source if churn_source is not None or source is not None \
            else RegistryChurnSource(settings)
        churn = ChurnHolder(churn_src, settings.feature_params())
        state = AppState(
            settings=settings, holder=holder,
            redis=open_redis(redis_address(settings, must_answer=False),
                             cluster=settings.redis_cluster, client=redis_client),
            mapping=mapping, drift=DriftWindow(settings.api_drift_window, len(FEATURE_SPEC)),
            churn=churn,
        )
        app.state.serving = state
        await asyncio.to_thread(holder.refresh)
        await asyncio.to_thread(churn.refresh)
        state.tasks = [asyncio.create_task(holder.run(settings.api_model_poll_s)),
                       asyncio.create_task(churn.run(settings.api_model_poll_s)),
                       asyncio.create_task(_drift_loop(state))]
        if settings.clock == "event":
            state.tasks.append(asyncio.create_task(_clock_loop(state)))
        if not settings.api_auth_enabled:
            log.warning("API key auth is DISABLED (SEGSTREAM_API_AUTH_ENABLED=false)")
        gc.collect()
        gc.freeze()  # long-lived objects out of the collector's way: fewer GC pauses
        try:
            yield
        finally:
            for task in state.tasks:
                task.cancel()
            await asyncio.gather(*state.tasks, return_exceptions=True)
            await state.redis.close()

    app = FastAPI(
        title="segstream API",
        version="1",
        summary="Which segment is this user in, and what should the CMS show them.",
        description="Segment lookups by user id or posted session features, a user's "
        "features as of any time (`?as_of=`; default now), the segment catalogue, CMS "
        "personalization with holdout experiments, uplift. Errors are JSON "
        '`{"error": {"code", "message", "field"}}`. /v1 needs `X-API-Key` unless auth is '
        "disabled by setting.",
        lifespan=lifespan,
    )
    install_handlers(app)

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        body: dict[str, Any] = ServingError("internal error; see the server log").body()
        return Response(orjson.dumps(body), status_code=500, media_type="application/json")

    app.add_exception_handler(Exception, on_unexpected)
    for module in (users, segments, personalization, experiments):
        app.include_router(module.router)  # each router carries the /v1 prefix
    app.include_router(health.router)
    keys = tuple(k.get_secret_value().encode() for k in settings.api_keys)
    app.add_middleware(ServingMiddleware, max_body_bytes=settings.api_max_body_bytes,
                       key_ok=key_checker(keys) if settings.api_auth_enabled else None)
    _declare_api_key(app)
    return app


def _declare_api_key(app: FastAPI) -> None:
    """Put the X-API-Key scheme in the OpenAPI schema of every /v1 operation."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})[
                "APIKeyHeader"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            for path, ops in schema.get("paths", {}).items():
                if path.startswith("/v1/"):
                    for op in ops.values():
                        op["security"] = [{"APIKeyHeader": []}]
                        op.setdefault("responses", {})["401"] = {
                            "description": "Missing or unknown API key.",
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/ErrorBody"}}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers (``--factory``): settings from the environment."""
    return create_app(Settings())
