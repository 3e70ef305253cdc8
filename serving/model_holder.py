"""Hot reload: poll the champion alias off the request path, load, swap atomically.

Requests read ``holder.current`` once and use that immutable :class:`Served` bundle
to the end, so a swap never affects a request in flight. A failed poll or load keeps
the last good model, increments ``segstream_model_reload_failures_total``, sets
``segstream_model_registry_up`` to 0 and shows the error in ``/readyz``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from segstream.core.aggregates import FeatureParams
from segstream.serving import metrics
from segstream.serving.model_source import ModelSource
from segstream.serving.predict import Served

log = logging.getLogger(__name__)


class ModelHolder:
    def __init__(self, source: ModelSource, params: FeatureParams) -> None:
        self.source = source
        self.params = params  # a model fitted on other feature params is refused
        self.current: Served | None = None
        self.last_error: str | None = None
        self.last_poll: float | None = None
        self.registry_ok = False

    def refresh(self) -> bool:
        """One poll (blocking: run it in a thread). True if a new model was swapped in."""
        try:
            version = self.source.champion_version()
            if version is None:
                raise LookupError("the registry has no champion yet (train and promote one)")
            if self.current is not None and self.current.version == version:
                self._ok()
                return False
            model = self.source.load(version)
            served = Served.build(model, version, self.params)
        except Exception as exc:  # registry down, bad artefact, spec/params mismatch: keep serving
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.registry_ok = False
            self.last_poll = time.time()
            metrics.MODEL_RELOAD_FAILURES.inc()
            metrics.REGISTRY_UP.set(0)
            log.warning("model reload failed, serving %s: %s",
                        self.current.version if self.current else "nothing", self.last_error)
            return False
        self.current = served  # the atomic swap: one reference assignment
        metrics.MODEL_RELOADS.inc()
        metrics.MODEL_LOADED.set(served.loaded_at)
        metrics.MODEL_VERSION.set(float(version) if version.isdigit() else -1)
        self._ok()
        log.info("serving model version %s", version)
        return True

    def _ok(self) -> None:
        self.last_error = None
        self.registry_ok = True
        self.last_poll = time.time()
        metrics.REGISTRY_UP.set(1)

    async def run(self, poll_s: float) -> None:
        """Poll forever (a lifespan task); cancelled at shutdown."""
        while True:
            await asyncio.sleep(poll_s)
            await asyncio.to_thread(self.refresh)
