"""The CMS hook: content templates for a user and placement, with the holdout arm."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from segstream.serving import experiments
from segstream.serving.deps import State
from segstream.serving.errors import InvalidInput
from segstream.serving.routes.raw import MAX_USER_ID
from segstream.serving.schemas import NO_MODEL, UNAUTHORIZED, Personalization, error_responses

router = APIRouter(prefix="/v1", tags=["personalization"])


@router.get("/users/{user_id}/personalization", response_model=Personalization,
            responses=error_responses({
                **UNAUTHORIZED, **NO_MODEL, 404: "Unknown user and `default` not set.",
                422: "Unknown placement, or a parameter out of its bounds; the body names "
                     "the field."}))
async def personalization(
    user_id: Annotated[str, Path(min_length=1, max_length=MAX_USER_ID)],
    placement: Annotated[str, Query(max_length=128, description="CMS placement name.")],
    state: State,
    default: Annotated[bool, Query(description="Unknown user: use the cold-start "
                                   "segment.")] = True,
) -> dict[str, Any]:
    """Templates for the user's segment; users in the holdout get the default ones.

    An exposure is recorded once per user and experiment (for /uplift).
    """
    place = state.mapping.placements.get(placement)
    if place is None:
        raise InvalidInput(f"unknown placement {placement!r}; configured: "
                           f"{sorted(state.mapping.placements)}", field="query.placement")
    seg = await state.segment_of(user_id, default)
    sid, persona = int(seg["segment_id"]), str(seg["persona"])
    arm = None
    templates = place.templates(sid, persona)
    if place.experiment is not None:
        arm = state.mapping.arm(place.experiment, user_id)
        if arm == "control":
            templates = place.default
        await state.redis_call("expose", [experiments.expose_command(
            place.experiment, user_id, arm, sid)])
    return {"user_id": user_id, "placement": placement, "segment_id": sid,
            "persona": persona, "templates": list(templates),
            "experiment_id": place.experiment, "arm": arm,
            "model_version": seg["model_version"], "cold_start": seg["cold_start"]}
