"""User lookups: one user's segment or features, a batch, and the assignment of posted
session features. Stored records are evaluated as of ``as_of`` (default now)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from segstream.core.contract import FEATURE_SPEC
from segstream.serving.deps import State
from segstream.serving.records import parse_as_of
from segstream.serving.routes.raw import (
    MAX_USER_ID,
    RawRoute,
    body_of,
    bool_of,
    parsed_by,
    user_id_of,
)
from segstream.serving.schemas import (
    AS_OF_DOC,
    BODY_TOO_LARGE,
    NO_MODEL,
    UNAUTHORIZED,
    BatchAnswer,
    BatchRequest,
    SegmentAnswer,
    SessionFeatures,
    UserFeatures,
    error_responses,
)
from segstream.serving.state import AppState, check_batch_size

router = APIRouter(prefix="/v1", tags=["segments"])

UserId = Annotated[str, Path(min_length=1, max_length=MAX_USER_ID,
                             description="The user's id.")]
AsOf = Annotated[str | None, Query(description=AS_OF_DOC,
                                   examples=["2026-12-01T10:00:00Z"])]
_LOOKUP_ERRORS = {
    **UNAUTHORIZED,
    404: "No stored features for the user (and `default` not set).",
    422: "Invalid input (a malformed `as_of`, or one before the user's newest event, "
         "included); the body names the field.",
    503: "Model not loaded, Redis unavailable, or a stored record made with other feature "
         "params than this API's (the body names both).",
}
_ERRORS = error_responses(_LOOKUP_ERRORS)


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _segment_args(request: Request) -> dict[str, Any]:
    return {"user_id": user_id_of(request), "request": request,
            "default": bool_of(request, "default", False),
            "as_of": request.query_params.get("as_of")}


@parsed_by(_segment_args)
async def user_segment(
    user_id: UserId, request: Request,
    default: Annotated[bool, Query(description="Unknown user: answer the cold-start "
                                   "segment instead of 404.")] = False,
    as_of: AsOf = None,
) -> Response:
    """The user's segment under the champion model, from their stored aggregates
    evaluated as of `as_of` (default now)."""
    # the hot path takes the state from the request, not a dependency (one solve less)
    state: AppState = request.app.state.serving
    return _json(await state.segment_of(user_id, default, parse_as_of(as_of, "query.as_of")))


def _features_args(request: Request) -> dict[str, Any]:
    return {"user_id": user_id_of(request), "request": request,
            "as_of": request.query_params.get("as_of")}


@parsed_by(_features_args)
async def user_features(user_id: UserId, request: Request, as_of: AsOf = None) -> Response:
    """The user's named feature values as of `as_of` (default now), evaluated from the
    stored aggregates (Feast's get-online-features). Needs no model."""
    state: AppState = request.app.state.serving
    return _json(await state.features_of(user_id, parse_as_of(as_of, "query.as_of")))


# the two hot routes parse their own parameters (serving/routes/raw.py)
router.add_api_route("/users/{user_id}/segment", user_segment, methods=["GET"],
                     response_model=SegmentAnswer, responses=_ERRORS,
                     route_class_override=RawRoute)
router.add_api_route("/users/{user_id}/features", user_features, methods=["GET"],
                     response_model=UserFeatures, route_class_override=RawRoute,
                     responses=error_responses(_LOOKUP_ERRORS | {
                         503: "Redis unavailable, or a stored record made with other "
                              "feature params than this API's."}))


async def _batch_args(request: Request) -> dict[str, Any]:
    return {"body": await body_of(request, BatchRequest), "request": request}


@parsed_by(_batch_args)
async def users_batch(body: BatchRequest, request: Request) -> Response:
    """Segments of many users in one pipelined Redis round trip, all as of `as_of`."""
    state: AppState = request.app.state.serving
    check_batch_size(len(body.user_ids), state.settings.api_max_batch_ids)
    as_of = parse_as_of(body.as_of, "body.as_of")
    results, missing = await state.lookup(body.user_ids, as_of, "body.as_of")
    return _json({"results": results, "missing": missing})


router.add_api_route("/users/segments:batch", users_batch, methods=["POST"],
                     response_model=BatchAnswer, route_class_override=RawRoute,
                     responses=error_responses({
                         **{k: v for k, v in _LOOKUP_ERRORS.items() if k != 404},  # missing
                         413: "More ids than `api_max_batch_ids`, or a body over "
                              "`api_max_body_bytes`."}))


@router.post("/segments/assign", response_model=SegmentAnswer,
             responses=error_responses({
                 **UNAUTHORIZED, **BODY_TOO_LARGE, **NO_MODEL,
                 422: "A feature value of the wrong type or out of its bounds, or an "
                      "unknown feature; the body names the field."}))
async def assign_features(body: SessionFeatures, state: State) -> Response:  # type: ignore[valid-type]
    """Assign posted session features; features not posted take their spec default."""
    assert isinstance(body, BaseModel)
    values = body.model_dump()
    x = np.array([[values[name] for name in FEATURE_SPEC.names]], dtype=np.float64)
    served = state.served()
    return _json(state.assign_rows(served, x)[0])
