"""MLflow model-registry adapter: register, alias, list and load :class:`SegmentModel`
(:class:`Registry`) and the churn model, :class:`ChurnModel` (:class:`ChurnRegistry`).

Each kind is its own registered model (``model_name``, ``churn_model_name``) with its
own versions, alias ``champion`` and champion history; :class:`ModelRegistry` holds
what the two share (aliases, promotion, listing, errors). A churn version's tags are
``kind`` (``churn``), ``spec_version``, ``label``, ``horizon_days``, ``rows``,
``data_start_ms``/``as_of_ms`` (its first and newest training snapshot times),
``metrics``, ``gate``, ``gate_reasons``, ``feature_params``, ``band_edges``; its
artefact is the two plain files :meth:`ChurnModel.save` writes.

The artefact is stored as the plain files :meth:`SegmentModel.save` writes (an
``.npz`` and a ``.json``) under the artifact path ``model`` of one MLflow run, and
registered as a model version whose ``source`` points there. Loading needs only
numpy and the MLflow client, never scikit-learn or a pyfunc flavour.

Each version carries, as MLflow tags (searchable, shown by ``segstream models``):
``spec_version``, ``k``, ``rows``, ``data_start_ms``/``data_end_ms``, ``parent``,
``segment_ids``, ``personas``, ``metrics`` (JSON), ``gate`` (``passed`` or
``rejected``), ``gate_reasons``, ``kind`` (``bootstrap``, ``incremental``,
``refit``), ``feature_params`` (the params fingerprint, hex) and ``as_of_ms`` (the
time the training rows were evaluated at). The full profiles and the drift baseline
live in the artefact JSON.

Embedded default (``registry_uri`` unset): ``sqlite:///<data_dir>/mlflow/mlflow.db``
with artefacts in ``<data_dir>/mlflow/artifacts``. The alias ``champion`` is the
model serving uses; :meth:`Registry.champion_version` is one indexed query, cheap
enough to poll.

A registry that does not answer (a tracking server down, a timeout) raises
:class:`RegistryUnavailable` naming the URI (without credentials: :func:`redact_uri`;
the API shows the message on /readyz and in its logs) and what to do; it is never taken for "no
such model/alias/version" (which would tell a user to train a model they have). Each
HTTP request is retried by MLflow itself (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7
with exponential backoff: about 4 minutes; ``MLFLOW_HTTP_REQUEST_TIMEOUT`` per try).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from segstream.config import Settings
from segstream.core.churn_model import ChurnModel
from segstream.core.segment_model import SegmentModel

log = logging.getLogger(__name__)

CHAMPION = "champion"
EXPERIMENT = "segstream-training"
ARTIFACT_PATH = "model"
_HISTORY_TAG = "champion_history"  # registered-model tag: JSON list of past champions


class RegistryError(RuntimeError):
    """A registry operation that cannot be done as asked (the message says why)."""


class RegistryUnavailable(RegistryError):
    """The registry did not answer or failed (a tracking server down, a timeout): not
    the same as an answer that a model, version or alias does not exist."""


# MLflow's answers that something does not exist (a missing alias is "invalid")
_MISSING_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def _missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) in _MISSING_CODES and "not found" in str(exc)


@dataclass(frozen=True)
class GateResult:
    """Outcome of the quality gates for one candidate (see :mod:`segstream.training.gates`)."""

    passed: bool
    reasons: tuple[str, ...] = ()  # why it was rejected (empty when passed)
    checks: dict[str, Any] = field(default_factory=dict)  # measured values per check

    def summary(self) -> str:
        return "passed" if self.passed else "rejected: " + "; ".join(self.reasons)


@dataclass(frozen=True)
class VersionInfo:
    """What ``segstream models list/show`` prints about one registered version."""

    version: str
    created_ms: int
    aliases: tuple[str, ...]
    tags: dict[str, str]
    source: str
    run_id: str | None

    @property
    def gate(self) -> str:
        return self.tags.get("gate", "unknown")

    @property
    def metrics(self) -> dict[str, float]:
        return dict(json.loads(self.tags.get("metrics", "{}")))

    def tag_int(self, key: str) -> int | None:
        value = self.tags.get(key)
        return int(value) if value not in (None, "", "None") else None


def redact_uri(uri: str) -> str:
    """``uri`` fit for a message: scheme, host, port and path, without the userinfo
    (``user:password@``), query or fragment, which may hold credentials.

    >>> redact_uri("postgresql://mlflow:pw@db.internal:5432/mlflow?sslmode=require")
    'postgresql://db.internal:5432/mlflow'
    >>> redact_uri("https://user:token@mlflow.example.com/"), redact_uri("sqlite:///a/b.db")
    ('https://mlflow.example.com/', 'sqlite:///a/b.db')
    """
    parts = urlsplit(uri)
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return uri  # nothing to hide (and "sqlite:///a" keeps its three slashes)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path


def _scrub(text: str, uri: str) -> str:
    """``text`` (an MLflow or driver error, which may quote the URI) without the
    credentials of ``uri``."""
    parts = urlsplit(uri)
    text = text.replace(uri, redact_uri(uri))
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        text = text.replace(userinfo + "@", "")
    for secret in {parts.password, unquote(parts.password or "")} - {None, ""}:
        text = text.replace(str(secret), "***")
    return text


def embedded_uri(settings: Settings) -> str:
    return f"sqlite:///{(settings.data_dir / 'mlflow' / 'mlflow.db').resolve()}"


class ModelRegistry:
    """The project's view of one registered model of the MLflow model registry: what
    every kind of model shares (aliases, promotion, rollback, listing, errors).

    Parameters
    ----------
    settings : Settings
        ``registry_uri`` (unset: embedded sqlite under ``data_dir``).
    name : str
        The registered model's name.
    """

    #: What the registered model holds (its MLflow description).
    description = "segstream model"
    #: The command that trains a version, and how one becomes champion (for messages).
    train_command = "segstream train"
    first_steps = "`segstream train`, `segstream models promote VERSION`"

    def __init__(self, settings: Settings, name: str) -> None:
        from mlflow import MlflowClient

        self.settings = settings
        self.name = name
        if settings.registry_uri:
            self.uri = settings.registry_uri
            self._artifact_location: str | None = None
        else:
            root = (settings.data_dir / "mlflow").resolve()
            root.mkdir(parents=True, exist_ok=True)
            self.uri = embedded_uri(settings)
            self._artifact_location = (root / "artifacts").as_uri()
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self._experiment_id: str | None = None

    @property
    def safe_uri(self) -> str:
        """The URI for messages and logs: without credentials (:func:`redact_uri`)."""
        return redact_uri(self.uri)

    def unavailable(self, doing: str, exc: BaseException) -> RegistryUnavailable:
        """The error for a call that failed other than by "not found" (raise it)."""
        from mlflow.environment_variables import (
            MLFLOW_HTTP_REQUEST_MAX_RETRIES,
            MLFLOW_HTTP_REQUEST_TIMEOUT,
        )

        retries = int(MLFLOW_HTTP_REQUEST_MAX_RETRIES.get())  # type: ignore[no-untyped-call]
        timeout = MLFLOW_HTTP_REQUEST_TIMEOUT.get()  # type: ignore[no-untyped-call]
        cause = _scrub(" ".join(str(exc).split()), self.uri)  # MLflow quotes the URL
        cause = cause if len(cause) <= 400 else cause[:400] + "..."
        if self.uri.startswith(("http://", "https://")):
            hint = (f"is the MLflow tracking server at {self.safe_uri} running and reachable? "
                    "Start it or fix SEGSTREAM_REGISTRY_URI. Each request was tried "
                    f"{retries + 1} times with backoff (MLFLOW_HTTP_REQUEST_MAX_RETRIES, "
                    f"MLFLOW_HTTP_REQUEST_TIMEOUT={timeout} s)")
        else:
            hint = "check that the registry store is readable (SEGSTREAM_REGISTRY_URI)"
        return RegistryUnavailable(
            f"the model registry at {self.safe_uri} failed to {doing}: {cause}; {hint}")

    @contextlib.contextmanager
    def _calling(self, doing: str) -> Iterator[None]:
        """Translate a failed registry call (other than our own errors) into
        :class:`RegistryUnavailable` naming the URI and what to do."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except RegistryError:
            raise
        except (MlflowException, OSError) as exc:  # requests' errors are OSErrors
            raise self.unavailable(doing, exc) from exc

    # --- writing -------------------------------------------------------------------
    def _experiment(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            if exp is not None:
                self._experiment_id = str(exp.experiment_id)
            else:
                self._experiment_id = str(self.client.create_experiment(
                    EXPERIMENT, artifact_location=self._artifact_location))
        return self._experiment_id

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if not _missing(exc):
                raise
            try:
                self.client.create_registered_model(self.name, description=self.description)
            except MlflowException:  # created concurrently by another process
                self.client.get_registered_model(self.name)

    def _log_version(self, save: Callable[[Path], Any], *, run_name: str, kind: str,
                     metrics: Mapping[str, float], params: Mapping[str, Any],
                     version_tags: dict[str, str], gate: GateResult | None,
                     description: str) -> str:
        """Log an artefact (``save(directory)``) as a run and register it as a version."""
        self._ensure_registered_model()
        run = self.client.create_run(self._experiment(), run_name=run_name,
                                     tags={"kind": kind})
        run_id = run.info.run_id
        try:
            with tempfile.TemporaryDirectory(prefix="segstream-model-") as tmp:
                save(Path(tmp))
                self.client.log_artifacts(run_id, tmp, ARTIFACT_PATH)
            for key, value in metrics.items():
                self.client.log_metric(run_id, key, float(value))
            for key, value in params.items():
                self.client.log_param(run_id, key, value)
            if gate is not None:
                self.client.log_dict(run_id, {"passed": gate.passed, "reasons": list(gate.reasons),
                                              "checks": gate.checks}, "gate.json")
            self.client.set_terminated(run_id)
        except Exception:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        mv = self.client.create_model_version(
            self.name, source=f"{run.info.artifact_uri}/{ARTIFACT_PATH}", run_id=run_id,
            tags=version_tags, description=description or gate_text(gate))
        log.info("registered %s version %s (%s)", self.name, mv.version, version_tags["gate"])
        return str(mv.version)

    def _download(self, ref: str, load: Callable[[Path, str], Any]) -> Any:
        """Download the artefact of a version or alias and ``load(directory, version)``."""
        import mlflow.artifacts

        info = self.show(ref)
        with tempfile.TemporaryDirectory(prefix="segstream-load-") as tmp:
            with self._calling(f"download the artefact of version {info.version}"):
                path = mlflow.artifacts.download_artifacts(
                    artifact_uri=info.source, dst_path=tmp, tracking_uri=self.uri)
            model = load(Path(path), info.version)
            shutil.rmtree(path, ignore_errors=True)
        return model

    def set_alias(self, version: str, alias: str = CHAMPION) -> None:
        """Point ``alias`` at ``version``; for ``champion`` also record the history."""
        self.show(version)  # raises a clear error for an unknown version
        with self._calling(f"point {alias!r} at version {version}"):
            if alias == CHAMPION:
                history = self.champion_history()
                current = self.champion_version()
                if current is not None and current != str(version):
                    history.append(current)
                    self.client.set_registered_model_tag(self.name, _HISTORY_TAG,
                                                         json.dumps(history[-50:]))
            self.client.set_registered_model_alias(self.name, alias, str(version))

    def promote(self, version: str, *, force: bool = False) -> None:
        """Make ``version`` the champion; refuses a version that did not pass its gates."""
        info = self.show(version)
        if info.gate != "passed" and not force:
            raise RegistryError(
                f"version {version} has gate={info.gate!r} ({info.tags.get('gate_reasons') or '-'})"
                "; only versions that passed the quality gates are promoted "
                "(use --force to override deliberately)"
            )
        self.set_alias(version, CHAMPION)

    def rollback(self) -> str:
        """Point ``champion`` back at the previous champion; returns that version."""
        history = self.champion_history()
        current = self.champion_version()
        while history and history[-1] == current:
            history.pop()
        if not history:
            raise RegistryError(
                "no previous champion to roll back to; promote a version explicitly with "
                "`segstream models promote VERSION`"
            )
        previous = history.pop()
        with self._calling(f"roll {CHAMPION!r} back to version {previous}"):
            self.client.set_registered_model_tag(self.name, _HISTORY_TAG, json.dumps(history))
            self.client.set_registered_model_alias(self.name, CHAMPION, previous)
        return previous

    def champion_history(self) -> list[str]:
        from mlflow.exceptions import MlflowException

        try:
            rm = self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if _missing(exc):
                return []
            raise self.unavailable("read the champion history", exc) from exc
        return [str(v) for v in json.loads(rm.tags.get(_HISTORY_TAG, "[]"))]

    # --- reading -------------------------------------------------------------------
    def champion_version(self) -> str | None:
        """The version behind the ``champion`` alias, or ``None`` (cheap: poll it)."""
        return self.alias_version(CHAMPION)

    def alias_version(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException as exc:
            if _missing(exc):  # no such model or alias
                return None
            # unreachable is not "no champion": callers must not act as if none existed
            raise self.unavailable(f"read the alias {alias!r}", exc) from exc

    def resolve(self, ref: str) -> str:
        """``"3"`` -> ``"3"``; ``"champion"``/``"@champion"`` -> the aliased version."""
        ref = str(ref).lstrip("@")
        if ref.isdigit():
            return ref
        if ref == "latest":
            versions = self.versions()
            if not versions:
                raise RegistryError(f"model {self.name!r} has no versions; run "
                                    f"`{self.train_command}`")
            return versions[0].version
        version = self.alias_version(ref)
        if version is None:
            raise RegistryError(
                f"model {self.name!r} has no alias {ref!r} in {self.safe_uri}; train and promote a "
                f"model first ({self.first_steps})"
            )
        return version

    def show(self, ref: str) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        version = self.resolve(ref)
        try:
            mv = self.client.get_model_version(self.name, version)
        except MlflowException as exc:
            if not _missing(exc):
                raise self.unavailable(f"read version {version}", exc) from exc
            raise RegistryError(
                f"model {self.name!r} has no version {version} in {self.safe_uri}; "
                "see `segstream models list`"
            ) from exc
        return _info(mv)

    def versions(self) -> list[VersionInfo]:
        """All versions, newest first."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name='{self.name}'")
            # search_model_versions leaves `aliases` empty; the registered model has them
            aliases: dict[str, list[str]] = {}
            for alias, version in (self.client.get_registered_model(self.name).aliases
                                   or {}).items():
                aliases.setdefault(str(version), []).append(alias)
        except MlflowException as exc:
            if _missing(exc):
                return []
            raise self.unavailable("list the versions", exc) from exc
        return sorted((_info(mv, aliases.get(str(mv.version))) for mv in found),
                      key=lambda v: -int(v.version))

class Registry(ModelRegistry):
    """The segment model's registered model (``model_name``): :class:`SegmentModel`."""

    description = "segstream behavioural segments (SegmentModel)"

    def __init__(self, settings: Settings, name: str | None = None) -> None:
        super().__init__(settings, name or settings.model_name)

    def register(
        self,
        model: SegmentModel,
        *,
        gate: GateResult | None = None,
        tags: Mapping[str, Any] | None = None,
        kind: str = "bootstrap",
        description: str = "",
    ) -> str:
        """Log ``model`` as run artefacts and register it as a new version.

        A candidate that failed its gates is registered too (``gate=rejected`` and
        the reasons as tags) so the decision stays auditable; it just never gets
        the champion alias. Sets and returns ``model.version``.
        """
        info = model.info
        version_tags: dict[str, str] = {
            "spec_version": model.spec_version,
            "k": str(model.k),
            "kind": kind,
            "rows": str(info.get("rows", "")),
            "data_start_ms": str(info.get("data_start_ms", "")),
            "data_end_ms": str(info.get("data_end_ms", "")),
            "parent": str(info.get("parent") or ""),
            "segment_ids": json.dumps([int(s) for s in model.segment_ids]),
            "personas": json.dumps(list(model.personas)),
            "segment_shares": json.dumps({str(p.get("segment_id")): round(float(p["share"]), 5)
                                          for p in model.profiles if "share" in p}),
            "metrics": json.dumps({k: round(float(v), 6) for k, v in model.metrics.items()}),
            "gate": "unchecked" if gate is None else ("passed" if gate.passed else "rejected"),
            "gate_reasons": "" if gate is None else "; ".join(gate.reasons),
            "feature_params": _fingerprint_tag(info.get("feature_params")),
            "as_of_ms": str(info.get("as_of_ms") or ""),
        }
        for key, value in (tags or {}).items():
            version_tags[key] = value if isinstance(value, str) else json.dumps(value)
        with self._calling(f"register a version of {self.name!r}"):
            version = self._log_version(
                model.save, run_name=f"{kind}-k{model.k}", kind=kind, metrics=model.metrics,
                params={"k": model.k, "spec_version": model.spec_version},
                version_tags=version_tags, gate=gate, description=description)
        model.version = version
        return version

    def load(self, ref: str = CHAMPION) -> SegmentModel:
        """Download the artefact of a version or alias and load it (``.version`` set)."""
        model: SegmentModel = self._download(
            ref, lambda path, version: SegmentModel.load(path, version=version))
        return model


class ChurnRegistry(ModelRegistry):
    """The churn model's registered model (``churn_model_name``): :class:`ChurnModel`."""

    description = "segstream churn risk (ChurnModel)"
    train_command = "segstream churn train"
    first_steps = "`segstream churn train` promotes a version that passes its gates"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.churn_model_name)

    def register(self, model: ChurnModel, *, gate: GateResult | None = None,
                 tags: Mapping[str, Any] | None = None, description: str = "") -> str:
        """Log ``model`` and register it as a new version (a rejected one too, with its
        reasons). Sets and returns ``model.version``."""
        info, label = model.info, model.label
        version_tags: dict[str, str] = {
            "kind": "churn",
            "spec_version": model.spec_version,
            "label": str(label.get("label", "")),
            "horizon_days": f"{float(label.get('horizon_days', 0.0)):g}",
            "rows": str(info.get("rows", "")),
            "data_start_ms": str(info.get("data_start_ms", "")),
            "as_of_ms": str(info.get("as_of_ms") or ""),
            "band_edges": json.dumps(list(model.band_edges)),
            "metrics": json.dumps({k: round(float(v), 6) for k, v in model.metrics.items()}),
            "gate": "unchecked" if gate is None else ("passed" if gate.passed else "rejected"),
            "gate_reasons": "" if gate is None else "; ".join(gate.reasons),
            "feature_params": _fingerprint_tag(info.get("feature_params")),
        }
        for key, value in (tags or {}).items():
            version_tags[key] = value if isinstance(value, str) else json.dumps(value)
        name = f"churn-{label.get('label')}-{float(label.get('horizon_days', 0.0)):g}d"
        with self._calling(f"register a version of {self.name!r}"):
            version = self._log_version(
                model.save, run_name=name, kind="churn", metrics=model.metrics,
                params={"spec_version": model.spec_version, "label": label.get("label"),
                        "horizon_days": label.get("horizon_days")},
                version_tags=version_tags, gate=gate, description=description)
        model.version = version
        return version

    def load(self, ref: str = CHAMPION) -> ChurnModel:
        """Download the artefact of a version or alias and load it (``.version`` set)."""
        model: ChurnModel = self._download(
            ref, lambda path, version: ChurnModel.load(path, version=version))
        return model


def _fingerprint_tag(params: Any) -> str:
    fp = (params or {}).get("fingerprint")
    return "" if fp is None else f"{int(fp):08x}"


def gate_text(gate: GateResult | None) -> str:
    return "quality gates not run" if gate is None else gate.summary()


def _info(mv: Any, aliases: list[str] | None = None) -> VersionInfo:
    return VersionInfo(
        version=str(mv.version),
        created_ms=int(mv.creation_timestamp or 0),
        aliases=tuple(sorted(aliases if aliases is not None else (mv.aliases or ()))),
        tags=dict(mv.tags or {}),
        source=str(mv.source),
        run_id=mv.run_id,
    )
