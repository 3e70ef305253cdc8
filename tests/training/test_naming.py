"""Persona names and descriptions a marketer reads (training/naming.py), and RFM groups
in the profiles, on real features of generated logs."""

from __future__ import annotations

import copy
import re

import numpy as np

from segstream.core import rfm
from segstream.core.contract import FEATURE_SPEC
from segstream.training.data import FeatureTable
from segstream.training.fit import fit_model
from segstream.training.naming import name_segments


def _feature_words() -> list[str]:
    words = {n for n in FEATURE_SPEC.names} | {n.replace("_", " ") for n in FEATURE_SPEC.names}
    return sorted(words)


def test_no_persona_or_description_names_a_feature(
        labelled: tuple[FeatureTable, np.ndarray]) -> None:
    model = fit_model(labelled[0], 7, seed=42)
    assert len(set(model.personas)) == 7
    for p in model.profiles:
        for text in (p["name"], p["description"]):
            low = text.lower()
            assert not [w for w in _feature_words() if w in low], text
    # every description states the members' figures in units
    for p in model.profiles:
        assert re.search(r"\d+% of users", p["description"]), p["description"]
        assert "days ago" in p["description"]


def test_personas_say_who_the_members_are(labelled: tuple[FeatureTable, np.ndarray]) -> None:
    """Each generated persona with purchases lands in a segment named as buyers, the
    never-buyers in segments named as browsers; the names follow the members' figures."""
    table, truth = labelled
    model = fit_model(table, 7, seed=42)
    seg = model.assign(table.X).segment_ids
    by_id = {p["segment_id"]: p for p in model.profiles}
    main = {t: int(np.bincount(seg[truth == t]).argmax()) for t in set(truth)}
    for persona in ("high_spend_loyalist", "power_user", "bargain_hunter"):
        p = by_id[main[persona]]
        assert p["facets"]["buyer"] == "yes" and p["kpis"]["buyer_share"] > 0.9, p["name"]
    assert "big spenders" in by_id[main["high_spend_loyalist"]]["name"]
    assert "bargain" in by_id[main["bargain_hunter"]]["name"]
    assert by_id[main["power_user"]]["name"].startswith("Loyal")
    assert by_id[main["power_user"]]["facets"]["frequency"] == "loyal"
    assert by_id[main["binge_viewer"]]["name"] == "Binge viewers"
    assert by_id[main["new_explorer"]]["name"] == "New and exploring"
    for persona in ("casual_browser", "decaying_at_risk", "binge_viewer", "new_explorer"):
        assert by_id[main[persona]]["facets"]["buyer"] == "no"
    # the RFM groups of a segment count its members, never-buyers as Prospect
    for p in model.profiles:
        assert sum(p["rfm_groups"].values()) == p["size"]
        buyers = round(p["kpis"]["buyer_share"] * p["size"])
        assert p["size"] - p["rfm_groups"][rfm.PROSPECT] == buyers


def test_an_update_keeps_a_name_while_the_members_stay_the_same_kind(
        labelled: tuple[FeatureTable, np.ndarray]) -> None:
    table, _ = labelled
    parent = fit_model(table, 7, seed=42)
    profiles = copy.deepcopy(parent.profiles)
    for p in profiles:  # the same members, a little more spend: same facets, same names
        p["kpis"]["median_spend"] = (p["kpis"]["median_spend"] or 0) * 1.1
    assert name_segments(profiles, table.X, None, parent.profiles) == parent.personas
    assert {p["name_source"] for p in profiles} == {"kept"}
    # members who stopped coming: that segment's name changes, the others keep theirs
    moved = copy.deepcopy(parent.profiles)
    row = next(i for i, p in enumerate(moved) if p["facets"]["state"] == "")
    moved[row]["kpis"]["median_visits_missed"] = 10.0
    names = name_segments(moved, table.X, None, parent.profiles)
    assert names[row] != parent.personas[row] and moved[row]["facets"]["state"] == "Lapsed"
    assert [n for i, n in enumerate(names) if i != row] == [
        n for i, n in enumerate(parent.personas) if i != row]
