"""Where the API gets its model: a small protocol and its adapters.

* :class:`RegistrySource` — the MLflow registry of training/ (``segstream.adapters.registry``):
  the champion alias, polled cheaply, and ``load(version)``. A registry that does not
  answer raises ``RegistryUnavailable`` (never "no champion"); the holder keeps the last
  good model.
* :class:`StaticSource` — models held in memory (tests that need no registry, the
  benchmark, tools that serve a model file).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from segstream.core.churn_model import ChurnModel
from segstream.core.segment_model import SegmentModel

M = TypeVar("M", SegmentModel, ChurnModel)

if TYPE_CHECKING:
    from segstream.config import Settings


class ModelSource(Protocol):
    def champion_version(self) -> str | None:
        """The version the champion alias points at now (cheap: polled)."""

    def load(self, version: str) -> SegmentModel:
        """The model artefact of ``version``."""


#: MLflow's per-request retries in a process that polls the registry (the API, the
#: change detector), unless the environment sets them: the next poll is the retry.
#: MLflow's defaults (7 retries with backoff, about 4 minutes; 120 s per try) would hold
#: the API's start-up that long with the registry down and hide an outage from /readyz
#: and ``segstream_model_registry_up`` for as long.
POLL_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                     "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def use_poll_env_defaults() -> None:
    """Set :data:`POLL_ENV_DEFAULTS` where the environment has not set them.

    MLflow reads them from ``os.environ`` on each request, so this is process-wide:
    call it only at the entry point of a process that does nothing but poll
    (``segstream serve``, before uvicorn starts its workers, which inherit it;
    ``segstream webhooks detect``). Never from library code: training in the same
    process (the demo, a test session) would get 1 retry and a 10 s timeout too.
    """
    for name, value in POLL_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


class RegistryModels(Generic[M]):
    """Adapter over one registered model of ``segstream.adapters.registry`` (MLflow):
    its champion alias and its versions. It leaves MLflow's retries as the process has
    them: see :func:`use_poll_env_defaults`."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def champion_version(self) -> str | None:
        version = self._registry.champion_version()
        return None if version is None else str(version)

    def load(self, version: str) -> M:
        model: M = self._registry.load(version)
        if model.version is None:
            model.version = str(version)
        return model


class RegistrySource(RegistryModels[SegmentModel]):
    """The segment model's versions in the registry (``Registry``)."""

    def __init__(self, settings: Settings) -> None:
        from segstream.adapters.registry import Registry  # heavy (mlflow): only where it is used

        super().__init__(Registry(settings))


class StaticModels(Generic[M]):
    """In-memory versions and a champion pointer; ``promote`` moves the pointer."""

    def __init__(self, model: M | None = None, version: str = "1") -> None:
        self._lock = threading.Lock()
        self._models: dict[str, M] = {}
        self._champion: str | None = None
        if model is not None:
            self.promote(model, version)

    def promote(self, model: M, version: str) -> None:
        with self._lock:
            model.version = version
            self._models[version] = model
            self._champion = version

    def champion_version(self) -> str | None:
        return self._champion

    def load(self, version: str) -> M:
        with self._lock:
            return self._models[version]


class StaticSource(StaticModels[SegmentModel]):
    """In-memory segment model versions (tests, the benchmark)."""
