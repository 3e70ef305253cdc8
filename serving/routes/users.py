"""User lookups: one user, a batch, and the assignment of posted session features."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from segstream.contract import FEATURE_SPEC
from serving.deps import State
from serving.schemas import BatchAnswer, BatchRequest, SegmentAnswer, SessionFeatures
from serving.state import AppState, check_batch_size

router = APIRouter(prefix="/v1", tags=["segments"])

UserId = Annotated[str, Path(min_length=1, max_length=256, description="The user's id.")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown API key."},
    404: {"description": "No stored features for the user (and `default` not set)."},
    422: {"description": "Invalid input; the body names the field."},
    503: {"description": "Model not loaded or Redis unavailable."},
}


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/users/{user_id}/segment", response_model=SegmentAnswer, responses=_ERRORS)
async def user_segment(
    user_id: UserId, request: Request,
    default: Annotated[bool, Query(description="Unknown user: answer the cold-start "
                                   "segment instead of 404.")] = False,
) -> Response:
    """The user's segment from their stored features under the champion model."""
    # the hot path takes the state from the request, not a dependency (one solve less)
    state: AppState = request.app.state.serving
    return _json(await state.segment_of(user_id, default))


@router.post("/users/segments:batch", response_model=BatchAnswer,
             responses={**_ERRORS, 413: {"description": "More ids than api_max_batch_ids."}})
async def users_batch(body: BatchRequest, state: State) -> Response:
    """Segments of many users in one pipelined Redis round trip."""
    check_batch_size(len(body.user_ids), state.settings.api_max_batch_ids)
    results, missing = await state.lookup(body.user_ids)
    return _json({"results": results, "missing": missing})


@router.post("/segments/assign", response_model=SegmentAnswer, responses=_ERRORS)
async def assign_features(body: SessionFeatures, state: State) -> Response:  # type: ignore[valid-type]
    """Assign posted session features; features not posted take their spec default."""
    assert isinstance(body, BaseModel)
    values = body.model_dump()
    x = np.array([[values[name] for name in FEATURE_SPEC.names]], dtype=np.float64)
    served = state.served()
    return _json(state.assign_rows(served, x, [None], [None])[0])
