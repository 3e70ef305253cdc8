"""Request and response models. Feature fields are derived from FEATURE_SPEC, so
no feature name is typed here; their bounds come from the feature kind."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from segstream.core import rfm
from segstream.core.contract import FEATURE_SPEC, Feature


def _feature_field(f: Feature) -> Any:
    ge: float | None = None
    le: float | None = None
    if f.kind in ("ratio", "flag"):
        ge, le = 0.0, 1.0
    elif f.kind in ("count", "money", "duration", "days"):
        ge = 0.0
    if f.nullable:  # no value without its flag: null, never a made-up number
        return (float | None, Field(None, ge=ge, le=le, description=f"{f.description} "
                                    f"Unit: {f.unit}. Null or not posted: no value."))
    return (float, Field(f.default, ge=ge, le=le, description=f"{f.description} Unit: "
                         f"{f.unit}. Default when not posted: {f.default}."))


#: POST /v1/segments/assign body: every spec feature, optional with its spec default.
SessionFeatures: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "SessionFeatures",
    # strict: a JSON true/false or "3" is not a number (lax mode took them as 1.0/3.0)
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False, strict=True),
    **{f.name: _feature_field(f) for f in FEATURE_SPEC.features},
)
SessionFeatures.__doc__ = (f"Session features of feature spec {FEATURE_SPEC.version}; "
                           "missing features take their documented default.")


class ErrorDetail(BaseModel):
    field: str
    reason: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Machine-readable kind: invalid_input, not_found, ...")
    message: str = Field(description="What was wrong, naming the field and the reason.")
    field: str | None = Field(None, description="Where: `body.x`, `query.x`, `path.x`, "
                              "`header.X`; absent when no one field is at fault.")
    details: list[ErrorDetail] | None = Field(None, description="Every invalid field "
                                              "(request validation errors).")


class ErrorBody(BaseModel):
    """The body of every error answer (serving/errors.py)."""

    error: ErrorInfo


def error_responses(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses in ``described`` (and no others),
    each with the one error body.

    Nothing is added: a route spreads the shared statuses it can answer
    (``**UNAUTHORIZED``, ``**BODY_TOO_LARGE``, ``**NO_MODEL``). Every /v1 operation's
    401 is also declared when the schema is built (``segstream.serving.app._declare_api_key``),
    with or without ``UNAUTHORIZED`` here.

    >>> sorted(error_responses({404: "Unknown user."}))
    [404]
    >>> sorted(error_responses({**UNAUTHORIZED, **BODY_TOO_LARGE}))
    [401, 413]
    """
    return {status: {"model": ErrorBody, "description": text}
            for status, text in sorted(described.items())}


UNAUTHORIZED = {401: "Missing or unknown API key."}
BODY_TOO_LARGE = {413: "The request body is over `api_max_body_bytes`."}
NO_MODEL = {503: "No model loaded yet, or Redis unavailable."}


class Reason(BaseModel):
    feature: str
    value: float = Field(description="The raw feature value.")
    z: float = Field(description="The value in the model's scaled space.")
    direction: Literal["high", "low"]
    weight: float = Field(description="How much this feature favours the assigned segment "
                          "over the runner-up (squared-distance units).")


_SCORE = ("{what}; 1-5 against the quintiles of the champion's purchasers at training "
          "(higher is better), null for a Prospect.")


class Rfm(BaseModel):
    """RFM scores and group (segstream/core/rfm.py) of the features the answer evaluated,
    under the champion's quintile edges. A user who never purchased is `Prospect`, with
    null scores."""

    r: int | None = Field(ge=1, le=5, description=_SCORE.format(
        what="Recency: days since the last purchase (fewer days, higher score)"))
    f: int | None = Field(ge=1, le=5, description=_SCORE.format(
        what="Frequency: lifetime orders"))
    m: int | None = Field(ge=1, le=5, description=_SCORE.format(
        what="Monetary: lifetime spend"))
    group: str = Field(
        json_schema_extra={"enum": list(rfm.GROUPS)},
        description="The group of R and the rounded-up mean of F and M: "
        + "; ".join(f"{g}: {d}" for g, d in rfm.DEFINITIONS.items()) + ".")


class ChurnRisk(BaseModel):
    """The churn champion's risk for the same evaluated features as the segment
    (segstream/core/churn_model.py): a user silent for longer scores higher as `as_of`
    moves on, with no event."""

    risk: float = Field(ge=0.0, le=1.0, description="Calibrated probability that the "
                        "user churns (`label`) in the `horizon_days` after `as_of`.")
    band: Literal["low", "medium", "high"] = Field(
        description="low below the model's first band edge, high from its second on.")
    reasons: list[str] = Field(max_length=3, description="Up to 3 features that raise "
                               "the risk most, strongest first, in words and units "
                               "(e.g. `no visit for 19 days; usual gap 3.0 days`).")
    model_version: str = Field(description="Registry version of the churn model.")
    label: Literal["activity", "purchase"] = Field(
        description="What churned means: activity, no accepted event in the horizon; "
        "purchase, no purchase in it.")
    horizon_days: float = Field(gt=0, description="The days after `as_of` looked at.")


class SegmentAnswer(BaseModel):
    user_id: str | None
    segment_id: int
    persona: str
    probabilities: dict[str, float] = Field(
        description="Soft membership per segment id: softmax of -d²/temperature "
        "(the model's training spread); sums to 1.")
    distance: float = Field(description="Distance to the assigned centroid (scaled space).")
    reasons: list[Reason]
    model_version: str
    feature_spec: str
    as_of: str | None = Field(description="The time the stored aggregates were evaluated "
                              "at (ISO 8601, UTC): `?as_of` or now; null for posted "
                              "features and cold starts.")
    features_updated_at: str | None = Field(description="When the user's record was last "
                                            "written, i.e. when an event of theirs was last "
                                            "folded (ISO 8601, UTC); null for posted ones.")
    stale: bool = Field(description="The record was written more than `api_stale_after_s` "
                        "ago (no event folded since; the features still age to `as_of`).")
    cold_start: bool = Field(description="True when `?default=true` answered an unknown "
                             "user with the cold-start segment.")
    rfm: Rfm = Field(description="RFM scores and group of the same evaluated features "
                     "(a cold start: Prospect).")
    churn: ChurnRisk | None = Field(description="Churn risk of the same evaluated "
                                    "features; null when no churn model is registered "
                                    "(or loaded), and for a cold start.")


AS_OF_DOC = ("ISO 8601 time to evaluate the features at (no offset: UTC). Default: now "
             "(the API's wall clock; a user whose newest event is stamped ahead of it is "
             "evaluated at that event). Earlier than the user's newest event: 422.")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    user_ids: list[str] = Field(min_length=1,
                                description="Up to `api_max_batch_ids` ids (more: 413).")
    as_of: str | None = Field(None, description=AS_OF_DOC + " The same time for every id.",
                              examples=["2026-12-01T10:00:00Z"])


class BatchAnswer(BaseModel):
    results: list[SegmentAnswer]
    missing: list[str] = Field(description="Ids without stored features.")


#: The named feature values of one user (spec order), generated from FEATURE_SPEC.
FeatureValues: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "FeatureValues",
    **{f.name: (float | None if f.nullable else float, Field(
        description=f"{f.description} Unit: {f.unit}. Time basis: {f.time}."))
       for f in FEATURE_SPEC.features},
)


class UserFeatures(BaseModel):
    """A user's features evaluated from their stored aggregates (Feast's
    get-online-features)."""

    user_id: str
    as_of: str = Field(description="The evaluation time (ISO 8601, UTC).")
    spec_version: str = Field(description="Feature spec version of the values.")
    last_event_at: str = Field(description="The user's newest folded event (ISO 8601).")
    updated_at: str | None = Field(description="When the record was last written.")
    features: FeatureValues  # type: ignore[valid-type]
    model_version: str | None = Field(description="The champion whose RFM edges scored "
                                      "`rfm`; null when no model is loaded.")
    rfm: Rfm | None = Field(description="RFM scores and group of these features; null "
                            "when no model is loaded (the features need none).")


class MemberStats(BaseModel):
    """One feature over the segment's members at training, in the feature's unit."""

    n: int = Field(description="Members the feature describes (a purchase feature: the "
                   "members who purchased).")
    median: float | None
    q25: float | None = Field(description="25th percentile.")
    q75: float | None = Field(description="75th percentile.")


class RfmGroupCount(BaseModel):
    group: str = Field(json_schema_extra={"enum": list(rfm.GROUPS)})
    users: int = Field(description="Members in the group at training.")
    share: float | None = Field(description="users / the segment's members (null: none).")
    definition: str = Field(description="What the group's members did.")


class SegmentChurn(BaseModel):
    """The members' churn risk as of the change detector's last complete sweep (every
    stored user evaluated as of the sweep's clock time under the churn and segment
    champions): not live, and null until a sweep with a churn model has run under this
    segment model version."""

    users: int = Field(description="Stored users the sweep assigned to the segment.")
    mean_risk: float | None = Field(ge=0.0, le=1.0, description="Their mean churn risk "
                                    "(null: no users).")
    high_share: float | None = Field(ge=0.0, le=1.0, description="Their share in the high "
                                     "band (null: no users).")
    as_of: str = Field(description="The time the sweep evaluated the users at (ISO 8601, "
                       "UTC).")
    measured_at: str = Field(description="When the sweep completed (ISO 8601, UTC).")
    churn_model_version: str = Field(description="The churn model the sweep scored with.")
    label: str = Field(description="What churned means for that model (activity, purchase).")
    horizon_days: float = Field(description="The days after `as_of` the risk looks at.")


class SegmentInfo(BaseModel):
    segment_id: int
    persona: str
    description: str | None = Field(description="One sentence of the members' KPIs.")
    size: int | None
    share: float | None
    kpis: dict[str, float | None] = Field(
        description="The members' figures in business units (training/profiles.py): share "
        "of users, share who bought, median orders, spend and order value of the buyers, "
        "median days since the last visit and purchase, ...; empty for a model fitted "
        "without them.")
    members: dict[str, MemberStats] = Field(
        description="Per feature (spec order), the median and quartiles of the members' "
        "own values, never the centroid.")
    rfm_groups: list[RfmGroupCount] = Field(
        description="The members per RFM group at training, every group in "
        "segstream/core/rfm.py order (empty for a model fitted without them).")
    profile: dict[str, Any] = Field(
        description="The rest of the training profile (which features set the segment "
        "apart, as z-scores of the member mean; the naming facets). The centroid is left "
        "out: a point in the model's scaled space, not a figure members have.")
    templates: dict[str, list[str]] = Field(description="Content templates per placement.")
    churn: SegmentChurn | None = Field(description="The members' churn risk as of the last "
                                       "sweep; null without one (no churn model, no sweep "
                                       "yet, or one under another segment model version).")


class Catalogue(BaseModel):
    model_version: str
    segments: list[SegmentInfo]


class SegmentMigration(BaseModel):
    from_segment: int
    to_segment: int
    count: int = Field(description="Changes from `from_segment` to `to_segment`.")


class GroupMigration(BaseModel):
    from_group: str = Field(json_schema_extra={"enum": list(rfm.GROUPS)})
    to_group: str = Field(json_schema_extra={"enum": list(rfm.GROUPS)})
    count: int = Field(description="Changes from `from_group` to `to_group`.")


class Migrations(BaseModel):
    """The changes the change detector published in a window, as from -> to matrices
    (their non-zero cells, largest first)."""

    since: str = Field(description="Start of the window counted (ISO 8601, UTC): `since` "
                       "rounded down to the hour.")
    until: str = Field(description="End of the window counted, exclusive: `until` rounded "
                       "up to the hour.")
    bucket_s: int = Field(description="The counting unit, in seconds (an hour).")
    changes: int = Field(description="Change events in the window (one event may change "
                         "both the segment and the RFM group).")
    segment_changes: int = Field(description="The sum of `segments`.")
    rfm_group_changes: int = Field(description="The sum of `rfm_groups`.")
    segments: list[SegmentMigration]
    rfm_groups: list[GroupMigration]


class Personalization(BaseModel):
    user_id: str
    placement: str
    segment_id: int
    persona: str
    templates: list[str]
    experiment_id: str | None
    arm: Literal["treatment", "control"] | None = Field(
        description="control: the holdout (default experience); deterministic per "
        "user and experiment.")
    model_version: str
    cold_start: bool


MAX_CONVERSION_VALUE = 1e12


class ConversionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
    user_id: str = Field(min_length=1, max_length=256)
    experiment_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    # bounded: sums of values near the float maximum overflowed to inf, which the
    # uplift report then answered as null where the schema promises a number
    value: float = Field(1.0, ge=0.0, le=MAX_CONVERSION_VALUE,
                         description="Conversion value (revenue...), at most 1e12.")


class ConversionOut(BaseModel):
    user_id: str
    experiment_id: str
    arm: Literal["treatment", "control"]
    counted: bool = Field(description="False if the user was never exposed in this "
                          "experiment (kept, but not in the conversion rates).")


class ArmStats(BaseModel):
    exposed: int
    converted: int
    rate: float | None
    value: float


class Uplift(BaseModel):
    absolute: float | None = Field(description="rate(treatment) - rate(control)")
    absolute_ci95: tuple[float, float] | None = Field(description="Wald interval.")
    relative: float | None = Field(description="absolute / rate(control)")
    relative_ci95: tuple[float, float] | None = Field(description="Delta method on the "
                                                      "log rate ratio.")


class UpliftGroup(BaseModel):
    treatment: ArmStats
    control: ArmStats
    uplift: Uplift


class UpliftReport(BaseModel):
    experiment_id: str
    overall: UpliftGroup
    segments: dict[str, UpliftGroup]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    details: dict[str, Any]
