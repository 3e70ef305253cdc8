"""CMS personalization (YAML mapping, deterministic holdout) and uplift (real Redis)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from segstream.serving.experiments import uplift
from segstream.serving.personalization import MappingError, assign_arm, load_mapping
from tests.support.api import Api
from tests.support.archetypes import put_users

pytestmark = pytest.mark.redis

MAPPING = """
experiments:
  hp-test: {holdout: 0.5}
placements:
  homepage:
    experiment: hp-test
    default: [home-generic]
    segments:
      "20": [home-vip, home-loyalty]
      Night owls: home-late
"""


@pytest.fixture
def api(api_factory: Callable[..., Api], redis_client: Any, tmp_path: Path) -> Api:
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING)
    put_users(redis_client, {f"u{i}": i % 3 for i in range(200)})
    return api_factory(api_personalization_file=path)


def test_templates_per_segment_and_deterministic_arms(api: Api) -> None:
    arms = {}
    with httpx.Client(base_url=api.url, headers=api.headers) as c:
        for i in range(200):
            body = c.get(f"/v1/users/u{i}/personalization",
                         params={"placement": "homepage"}).json()
            arms[f"u{i}"] = body["arm"]
            assert body["arm"] == assign_arm("hp-test", f"u{i}", 0.5)
            assert body["experiment_id"] == "hp-test"
            if body["arm"] == "control":
                assert body["templates"] == ["home-generic"]
            elif body["segment_id"] == 20:
                assert body["templates"] == ["home-vip", "home-loyalty"]
            elif body["segment_id"] == 30:
                assert body["templates"] == ["home-late"]  # keyed by persona name
            else:
                assert body["templates"] == ["home-generic"]
        again = c.get("/v1/users/u7/personalization", params={"placement": "homepage"})
        assert again.json()["arm"] == arms["u7"]
        r = c.get("/v1/users/u1/personalization", params={"placement": "sidebar"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "query.placement"
    share = sum(a == "control" for a in arms.values()) / len(arms)
    assert 0.35 < share < 0.65


def test_conversions_and_uplift_with_ci(api: Api) -> None:
    with httpx.Client(base_url=api.url, headers=api.headers) as c:
        arms = {}
        for i in range(200):
            arms[i] = c.get(f"/v1/users/u{i}/personalization",
                            params={"placement": "homepage"}).json()["arm"]
        # treatment users convert when i % 2 == 0, control users when i % 5 == 0
        converters = [i for i in range(200)
                      if (arms[i] == "treatment" and i % 2 == 0)
                      or (arms[i] == "control" and i % 5 == 0)]
        for i in converters:
            r = c.post("/v1/conversions", json={"user_id": f"u{i}",
                                                "experiment_id": "hp-test", "value": 2.5})
            assert r.status_code == 201 and r.json()["counted"] is True
        # a repeat conversion adds value but not a second converter
        c.post("/v1/conversions", json={"user_id": f"u{converters[0]}",
                                        "experiment_id": "hp-test"})
        r = c.post("/v1/conversions", json={"user_id": "stranger", "experiment_id": "hp-test"})
        assert r.json()["counted"] is False
        r = c.post("/v1/conversions", json={"user_id": "u1", "experiment_id": "nope"})
        assert r.status_code == 404 and r.json()["error"]["field"] == "body.experiment_id"
        r = c.post("/v1/conversions", json={"user_id": "u1", "experiment_id": "hp-test",
                                            "value": -1})
        assert r.status_code == 422 and r.json()["error"]["field"] == "body.value"
        report = c.get("/v1/experiments/hp-test/uplift").json()
    nt = sum(a == "treatment" for a in arms.values())
    xt = sum(1 for i in converters if arms[i] == "treatment")
    nc, xc = 200 - nt, len(converters) - xt
    overall = report["overall"]
    assert overall["treatment"]["exposed"] == nt and overall["treatment"]["converted"] == xt
    assert overall["control"]["exposed"] == nc and overall["control"]["converted"] == xc
    expect = uplift(nt, xt, nc, xc)
    assert overall["uplift"]["absolute"] == pytest.approx(expect["absolute"])
    lo, hi = overall["uplift"]["absolute_ci95"]
    assert lo < overall["uplift"]["absolute"] < hi
    assert set(report["segments"]) == {"10", "20", "30"}
    assert sum(g["treatment"]["exposed"] for g in report["segments"].values()) == nt


def test_uplift_statistics_known_values() -> None:
    u = uplift(1000, 120, 1000, 100)
    assert u["absolute"] == pytest.approx(0.02)
    assert u["absolute_ci95"] == pytest.approx((-0.00750, 0.04750), abs=1e-4)
    assert u["relative"] == pytest.approx(0.2)
    lo, hi = u["relative_ci95"]
    assert lo < 0.2 < hi
    assert uplift(0, 0, 10, 1)["absolute"] is None


def test_bad_mapping_names_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("placements:\n  home:\n    experiment: missing\n    default: [a]\n")
    with pytest.raises(MappingError, match=r"placements.home.experiment"):
        load_mapping(bad)
