"""The churn-risk champion beside the segment champion: where it comes from, its hot
reload, and the ``churn`` body of an answer.

The churn model is optional. With none registered (or none loadable) every churn field
is null and readiness does not depend on it. Like the segment model it is polled off
the request path and swapped as one immutable :class:`ServedChurn`; a request reads
``holder.current`` once. A churn model trained on other feature params or another
feature spec is refused (``ChurnModel.check``) with the reason logged and shown in
``/readyz``; the last good one (or none) keeps serving, and the refused version is not
downloaded again until the alias moves.

Scoring is one vectorised :meth:`ChurnModel.score` per batch of rows: the rows the
segment model assigns, evaluated from the same records as of the same time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from segstream.core.aggregates import FeatureParams
from segstream.core.churn_model import BANDS, TOP_REASONS, ChurnModel, ChurnScores
from segstream.serving import metrics
from segstream.serving.model_source import RegistryModels, StaticModels

if TYPE_CHECKING:
    from segstream.config import Settings

log = logging.getLogger(__name__)
HIGH = BANDS[-1]


class ChurnSource(Protocol):
    def champion_version(self) -> str | None:
        """The version the churn champion alias points at now (``None``: none)."""

    def load(self, version: str) -> ChurnModel:
        """The churn artefact of ``version``."""


class RegistryChurnSource(RegistryModels[ChurnModel]):
    """The churn model's versions in the registry (``ChurnRegistry``, ``churn_model_name``)."""

    def __init__(self, settings: Settings) -> None:
        from segstream.adapters.registry import ChurnRegistry  # heavy (mlflow)

        super().__init__(ChurnRegistry(settings))


class StaticChurnSource(StaticModels[ChurnModel]):
    """In-memory churn versions and a champion pointer (tests, the benchmark)."""


@dataclass(frozen=True)
class ServedChurn:
    """One churn model version, swapped as a whole."""

    model: ChurnModel
    version: str
    loaded_at: float
    label: str
    horizon_days: float

    @classmethod
    def build(cls, model: ChurnModel, version: str, params: FeatureParams) -> ServedChurn:
        """Wrap ``model``; refuses another spec or other feature params (naming both)."""
        model.version = version
        model.check(params.fingerprint)
        return cls(model, version, time.time(), str(model.label.get("label")),
                   float(model.label.get("horizon_days", 0.0)))

    def score(self, x: np.ndarray, reasons: int = TOP_REASONS) -> ChurnScores:
        return self.model.score(x, reasons=reasons)

    def body(self, scores: ChurnScores, row: int) -> dict[str, Any]:
        """The ``schemas.ChurnRisk`` shape of one scored row."""
        return {"risk": float(scores.risk[row]), "band": BANDS[int(scores.band_index[row])],
                "reasons": list(scores.reasons[row]), "model_version": self.version,
                "label": self.label, "horizon_days": self.horizon_days}

    def bodies(self, x: np.ndarray) -> list[dict[str, Any]]:
        """Every row's churn body, from one score call."""
        scores = self.score(x)
        return [self.body(scores, i) for i in range(len(x))]


def churn_bodies(churn: ServedChurn | None, x: np.ndarray) -> list[dict[str, Any] | None]:
    """Each row's churn body, or ``None`` for every row without a churn model."""
    if churn is None:
        return [None] * len(x)
    out: list[dict[str, Any] | None] = list(churn.bodies(x))
    return out


class ChurnHolder:
    """Polls the churn champion; ``current`` is ``None`` while there is none."""

    def __init__(self, source: ChurnSource | None, params: FeatureParams | None) -> None:
        self.source = source
        self.params = params
        self.current: ServedChurn | None = None
        self.last_error: str | None = None  # registry errors and refusals
        self.registry_ok = source is None
        self._refused: str | None = None  # a version refused: not loaded again

    def refresh(self) -> bool:
        """One poll (blocking). True if the served churn model changed."""
        if self.source is None or self.params is None:
            return False
        try:
            version = self.source.champion_version()
        except Exception as exc:  # registry down: keep the last good one
            self.registry_ok = False
            return self._failed(f"{type(exc).__name__}: {exc}")
        self.registry_ok = True
        if version is None:
            self.last_error = None
            if self.current is not None:
                log.warning("the churn champion alias is gone: churn fields are null")
                self.current = None
                metrics.CHURN_MODEL_VERSION.set(-1)
                return True
            return False
        if (self.current is not None and self.current.version == version) or \
                version == self._refused:
            return False
        try:
            served = ServedChurn.build(self.source.load(version), version, self.params)
        except ValueError as exc:  # another spec or other feature params: refused
            self._refused = version
            return self._failed(f"churn model version {version} refused: {exc}")
        except Exception as exc:  # a download that failed: try again next poll
            return self._failed(f"{type(exc).__name__}: {exc}")
        self.current, self.last_error, self._refused = served, None, None
        metrics.CHURN_MODEL_VERSION.set(float(version) if version.isdigit() else -1)
        log.info("serving churn model version %s (%s, %g days)", version, served.label,
                 served.horizon_days)
        return True

    def _failed(self, error: str) -> bool:
        self.last_error = error
        metrics.CHURN_RELOAD_FAILURES.inc()
        log.warning("churn model reload failed, serving %s: %s",
                    self.current.version if self.current else "no churn model", error)
        return False

    async def run(self, poll_s: float) -> None:
        while True:
            await asyncio.sleep(poll_s)
            await asyncio.to_thread(self.refresh)
