"""The segment catalogue: persona, size and share, profile, content templates."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from segstream.serving.deps import State
from segstream.serving.errors import NotFound
from segstream.serving.predict import Served
from segstream.serving.schemas import UNAUTHORIZED, Catalogue, SegmentInfo, error_responses
from segstream.serving.state import AppState

router = APIRouter(prefix="/v1", tags=["catalogue"])


def _info(state: AppState, served: Served, row: int) -> dict[str, Any]:
    model = served.model
    profile = dict(model.profiles[row]) if row < len(model.profiles) else {}
    sid, persona = int(model.segment_ids[row]), model.personas[row]
    size, share = profile.get("size"), profile.get("share")
    return {
        "segment_id": sid, "persona": persona,
        "size": None if size is None else int(size),
        "share": None if share is None else float(share),
        "profile": profile,
        "templates": {name: list(p.templates(sid, persona))
                      for name, p in state.mapping.placements.items()},
    }


@router.get("/segments", response_model=Catalogue,
            responses=error_responses({**UNAUTHORIZED, 503: "No model loaded yet."}))
async def catalogue(state: State) -> dict[str, Any]:
    """Every segment of the champion model."""
    served = state.served()
    return {"model_version": served.version,
            "segments": [_info(state, served, i) for i in range(served.model.k)]}


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
    return _info(state, served, row)
