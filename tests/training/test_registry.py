"""The MLflow adapter against a real sqlite-backed registry in a temp dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segstream.adapters.registry import CHAMPION, GateResult, Registry, RegistryError
from segstream.config import Settings
from segstream.core.aggregates import FeatureParams
from segstream.core.contract import FEATURE_SPEC
from segstream.core.segment_model import Preprocessor, SegmentModel

pytestmark = pytest.mark.mlflow


def tiny_model(k: int = 3, seed: int = 0) -> SegmentModel:
    d = len(FEATURE_SPEC)
    rng = np.random.default_rng(seed)
    pre = Preprocessor(log1p=np.array([f.heavy_tailed for f in FEATURE_SPEC.features]),
                       center=rng.normal(size=d), scale=np.abs(rng.normal(size=d)) + 0.5)
    return SegmentModel(
        spec_version=FEATURE_SPEC.version, feature_names=FEATURE_SPEC.names, preprocessor=pre,
        centroids=rng.normal(size=(k, d)), segment_ids=tuple(range(10, 10 + k)),
        personas=tuple(f"P{i}" for i in range(k)), temperature=2.0,
        profiles=[{"segment_id": 10 + i, "share": 1 / k} for i in range(k)],
        baseline={"shares": [1 / k] * k}, metrics={"silhouette": 0.4, "inertia": 12.5},
        info={"rows": 1000, "data_start_ms": 1, "data_end_ms": 2, "parent": None, "k": k,
              "feature_params": FeatureParams().describe(), "as_of_ms": 3},
    )


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(Settings(data_dir=tmp_path / "data"))


def test_register_load_roundtrip_and_metadata(registry: Registry, tmp_path: Path) -> None:
    assert registry.champion_version() is None
    assert registry.versions() == []
    model = tiny_model()
    version = registry.register(model, gate=GateResult(True, checks={"silhouette": 0.4}))
    assert version == "1" and model.version == "1"
    # the embedded store lives under the data dir
    assert (tmp_path / "data" / "mlflow" / "mlflow.db").is_file()
    loaded = registry.load("1")
    assert loaded.version == "1"
    np.testing.assert_array_equal(loaded.centroids, model.centroids)
    np.testing.assert_array_equal(loaded.preprocessor.scale, model.preprocessor.scale)
    assert loaded.segment_ids == model.segment_ids and loaded.personas == model.personas
    assert loaded.baseline == model.baseline and loaded.info["rows"] == 1000
    x = np.abs(np.random.default_rng(1).normal(size=(20, len(FEATURE_SPEC))))
    np.testing.assert_array_equal(loaded.assign(x).segment_ids, model.assign(x).segment_ids)
    info = registry.show("1")
    assert info.tags["spec_version"] == FEATURE_SPEC.version and info.tags["k"] == "3"
    assert info.tags["feature_params"] == f"{FeatureParams().fingerprint:08x}"
    assert info.tags["as_of_ms"] == "3"
    assert loaded.info["feature_params"] == FeatureParams().describe()
    assert info.tags["gate"] == "passed" and info.metrics["silhouette"] == 0.4
    assert info.tags["segment_ids"] == "[10, 11, 12]"
    assert info.tag_int("rows") == 1000


def test_champion_alias_promote_rollback(registry: Registry) -> None:
    v1 = registry.register(tiny_model(seed=1), gate=GateResult(True))
    v2 = registry.register(tiny_model(seed=2), gate=GateResult(True))
    bad = registry.register(tiny_model(seed=3),
                            gate=GateResult(False, ("segment 11 is empty",)))
    registry.promote(v1)
    assert registry.champion_version() == v1
    registry.promote(v2)
    assert registry.champion_version() == v2
    assert registry.load(CHAMPION).version == v2 == registry.load("@champion").version
    # a rejected candidate stays registered with its reason, and is not promoted
    with pytest.raises(RegistryError, match="segment 11 is empty"):
        registry.promote(bad)
    assert registry.show(bad).tags["gate"] == "rejected"
    assert registry.champion_version() == v2
    assert [v.version for v in registry.versions()] == [bad, v2, v1]
    assert registry.rollback() == v1
    assert registry.champion_version() == v1
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback()


def test_unknown_refs_say_what_to_do(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="segstream train"):
        registry.load(CHAMPION)
    registry.register(tiny_model(), gate=GateResult(True))
    with pytest.raises(RegistryError, match="no version 7"):
        registry.show("7")


def test_a_second_client_sees_the_champion(registry: Registry, tmp_path: Path) -> None:
    v = registry.register(tiny_model(), gate=GateResult(True))
    registry.set_alias(v)
    other = Registry(Settings(data_dir=tmp_path / "data"))  # e.g. the serving process
    assert other.champion_version() == v
    assert other.load().k == 3
