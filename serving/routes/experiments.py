"""Conversions and uplift per holdout experiment (stored in Redis)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from segstream.serving import experiments
from segstream.serving.deps import State
from segstream.serving.errors import NotFound
from segstream.serving.schemas import (
    BODY_TOO_LARGE,
    UNAUTHORIZED,
    ConversionIn,
    ConversionOut,
    UpliftReport,
    error_responses,
)

router = APIRouter(prefix="/v1", tags=["experiments"])

ExperimentId = Annotated[str, Path(min_length=1, max_length=128,
                                   pattern=r"^[A-Za-z0-9_.:-]+$")]


_UNKNOWN = {404: "No such experiment in the personalization mapping.",
            503: "Redis unavailable."}


@router.post("/conversions", response_model=ConversionOut, status_code=201,
             responses=error_responses({
                 **UNAUTHORIZED, **BODY_TOO_LARGE, **_UNKNOWN,
                 422: "A field of the wrong type or out of its bounds; the body names it."}))
async def conversion(body: ConversionIn, state: State) -> dict[str, Any]:
    """Record a conversion; the arm is recomputed from the user and experiment ids."""
    if body.experiment_id not in state.mapping.holdouts:
        raise NotFound(f"unknown experiment {body.experiment_id!r}; configured: "
                       f"{sorted(state.mapping.holdouts)}", field="body.experiment_id")
    arm = state.mapping.arm(body.experiment_id, body.user_id)
    (counted,) = await state.redis_call("convert", [experiments.convert_command(
        body.experiment_id, body.user_id, arm, body.value)])
    return {"user_id": body.user_id, "experiment_id": body.experiment_id, "arm": arm,
            "counted": bool(counted)}


@router.get("/experiments/{experiment_id}/uplift", response_model=UpliftReport,
            responses=error_responses({
                **UNAUTHORIZED, **_UNKNOWN,
                422: "An experiment id out of its bounds; the body names it."}))
async def uplift(experiment_id: ExperimentId, state: State) -> dict[str, Any]:
    """Conversion rate per arm and per segment, uplift with 95% confidence intervals."""
    if experiment_id not in state.mapping.holdouts:
        raise NotFound(f"unknown experiment {experiment_id!r}; configured: "
                       f"{sorted(state.mapping.holdouts)}", field="path.experiment_id")
    (flat,) = await state.redis_call("uplift", [experiments.stats_command(experiment_id)])
    return experiments.report(experiment_id, experiments.parse_stats(flat))
