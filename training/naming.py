"""Persona names and descriptions a marketer reads, from the members' own figures.

A name is built from four facets of a profile's KPIs (``training/profiles.py``), each
against the whole population of the same snapshot:

* **buyers or not**: a segment where at least half the members bought is named as
  buyers, the others as browsers;
* **value tier** (buyers): the segment's median order value at or above the 75th
  percentile of all buyers' order values is ``big spenders``, at or below the 25th
  ``bargain buyers``, else ``buyers``;
* **frequency** (buyers): a median of one order is ``one-time``; at least three and at
  or above the buyers' 75th percentile is ``loyal``; else ``repeat``;
* **activity state**: a median tenure at most a third of the population's is ``New``.
  Otherwise the members' *visits missed* (days since the last visit / their usual gap
  between visits; the population's median gap for a one-visit user) says whether they
  still come at their pace: for a user who visits at random at a steady pace it is
  exponentially distributed with median ln 2 = 0.69, so a segment median of at least
  3 x ln 2 is ``Lapsed``, at least 1.5 x ln 2 ``Lapsing``; otherwise active (no word).
  Browsers whose usual gap is at least twice the population's are ``Occasional``;
* **behaviour**: the non-purchase feature whose member mean stands out most (|z| >= 1),
  as a noun (:data:`BEHAVIOURS`), names browsers ("Binge viewers") and tells two
  buyer segments with the same facets apart.

So: "Loyal big spenders", "Lapsed one-time buyers", "Browsing, never bought", "New and
exploring", "Binge viewers". No name contains a feature name (a test checks it).

**Stable names.** An update that keeps a segment id keeps its generated name while the
facets above stay the same; the name changes only when the members cross one of the
thresholds. Names given in the overrides file always win.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from segstream.core import rfm
from segstream.core.contract import FEATURE_SPEC, FeatureSpec
from segstream.core.pace import usual_gap_days

#: (feature, direction) -> the behaviour noun of browsers who stand out on it.
BEHAVIOURS: dict[tuple[str, str], str] = {
    ("dwell_mean", "high"): "Binge viewers",
    ("dwell_variance", "high"): "Binge viewers",
    ("session_duration", "high"): "Binge viewers",
    ("search_ratio", "high"): "Searchers",
    ("cart_ratio", "high"): "Cart fillers",
    ("session_rate_short", "high"): "Frequent visitors",
    ("session_rate_long", "high"): "Frequent visitors",
    ("active_days", "high"): "Frequent visitors",
    ("lifetime_sessions", "high"): "Frequent visitors",
    ("events_per_session", "high"): "Deep browsers",
    ("path_complexity", "high"): "Deep browsers",
    ("content_breadth", "high"): "Explorers",
    ("adoption_breadth", "high"): "Explorers",
    ("mobile_share", "high"): "Mobile browsers",
    ("mobile_share", "low"): "Desktop browsers",
    ("prime_time_share", "high"): "Evening visitors",
    ("top_category_share", "high"): "Category fans",
    ("engagement_trend", "high"): "Warming up",
    ("engagement_trend", "low"): "Cooling off",
    ("session_rate_short", "low"): "Occasional visitors",
    ("session_rate_long", "low"): "Occasional visitors",
}
BEHAVIOUR_MIN_Z = 1.0
STEADY_MISSED = math.log(2.0)
LAPSING_MISSED = 1.5 * STEADY_MISSED
LAPSED_MISSED = 3.0 * STEADY_MISSED


def population(X: np.ndarray, spec: FeatureSpec = FEATURE_SPEC) -> dict[str, float]:
    """The population figures the facets compare a segment with."""
    col = {n: j for j, n in enumerate(spec.names)}
    buyers = X[:, col["has_purchased"]] == 1.0
    gaps = usual_gap_days(X, spec)

    def q(name: str, p: float, rows: np.ndarray | None = None) -> float:
        v = X[rows if rows is not None else slice(None), col[name]]
        v = v[~np.isnan(v)]
        return float(np.percentile(v, p)) if len(v) else float("nan")

    return {"aov_p25": q("avg_order_value", 25, buyers),
            "aov_p75": q("avg_order_value", 75, buyers),
            "orders_p75": q(rfm.F_FEATURE, 75, buyers),
            "recency_median": q("recency_days", 50), "tenure_median": q("tenure_days", 50),
            "gap_median": float(np.nanmedian(gaps)) if (~np.isnan(gaps)).any() else 1.0}


def facets(profile: dict[str, Any], pop: dict[str, float]) -> dict[str, str]:
    k = profile["kpis"]
    buyer = k["buyer_share"] >= 0.5
    state, missed = "", k["median_visits_missed"] or 0.0
    if k["median_tenure_days"] is not None and k["median_tenure_days"] <= pop["tenure_median"] / 3:
        state = "New"
    elif missed >= LAPSED_MISSED:
        state = "Lapsed"
    elif missed >= LAPSING_MISSED:
        state = "Lapsing"
    elif not buyer and (k["median_usual_gap_days"] or 0.0) >= 2.0 * pop["gap_median"]:
        state = "Occasional"
    out = {"buyer": "yes" if buyer else "no", "state": state, "tier": "", "frequency": "",
           "behaviour": behaviour(profile)}
    if buyer:
        aov, orders = k["median_order_value"] or 0.0, k["median_orders"] or 0.0
        out["tier"] = ("big spenders" if aov >= pop["aov_p75"] else
                       "bargain buyers" if aov <= pop["aov_p25"] else "buyers")
        out["frequency"] = ("one-time" if orders <= 1.0 else
                            "loyal" if orders >= max(3.0, pop["orders_p75"]) else "repeat")
    return out


def behaviour(profile: dict[str, Any], min_z: float = BEHAVIOUR_MIN_Z) -> str:
    """The behaviour noun of the feature whose member mean stands out most."""
    for name, z in sorted(profile["z"].items(), key=lambda kv: -abs(kv[1])):
        noun = BEHAVIOURS.get((name, "high" if z > 0 else "low"))
        if noun and abs(z) >= min_z:
            return noun
    return ""


def name_of(f: dict[str, str]) -> str:
    if f["buyer"] == "yes":
        words = [f["state"], f["frequency"], f["tier"]]
        text = " ".join(w for w in words if w)
        return text[:1].upper() + text[1:]
    if f["state"] == "New":
        return "New and exploring"
    if f["state"] in ("Lapsed", "Lapsing", "Occasional"):
        noun = f["behaviour"] if f["behaviour"].endswith("s") else "browsers"  # a plural noun
        if f["state"] == "Occasional" and noun == "Occasional visitors":
            noun = "browsers"
        return f"{f['state']} {noun.lower()}"
    if f["behaviour"]:
        return f["behaviour"]
    return "Browsing, never bought"


def describe(profile: dict[str, Any]) -> str:
    """One sentence of the segment's KPIs in units."""
    k = profile["kpis"]
    parts = [f"{k['share']:.0%} of users"]
    if k["median_orders"] is not None:
        orders = k["median_orders"]
        parts.append(f"{k['buyer_share']:.0%} have bought, a median {orders:g} "
                     f"order{'' if orders == 1 else 's'} and {k['median_spend']:,.2f} spent "
                     f"({k['median_order_value']:,.2f} an order)")
    else:
        parts.append("none have bought")
    if k["median_days_since_visit"] is not None:
        parts.append(f"last visit a median {k['median_days_since_visit']:.1f} days ago")
    if k["median_usual_gap_days"] is not None and k["one_visit_share"] < 0.5:
        parts.append(f"usually every {k['median_usual_gap_days']:.1f} days")
    elif k["one_visit_share"] >= 0.5:
        parts.append(f"{k['one_visit_share']:.0%} came once")
    return "; ".join(parts) + "."


def name_segments(profiles: list[dict[str, Any]], X: np.ndarray,
                  overrides: dict[int, dict[str, str]] | None = None,
                  parent_profiles: list[dict[str, Any]] | None = None) -> tuple[str, ...]:
    """One unique name per profile (written into it with its facets and description):
    an override, else the parent's name while the facets hold, else a generated one."""
    pop = population(X)
    before = {int(p["segment_id"]): p for p in parent_profiles or []}
    names: list[str] = []
    for p in profiles:
        sid = int(p["segment_id"])
        p["facets"] = f = facets(p, pop)
        o = (overrides or {}).get(sid)
        old = before.get(sid)
        if o and o.get("name"):
            name, source = o["name"], "override"
        elif (old and old.get("name_source") in ("generated", "kept") and
              _same(old.get("facets"), f)):
            name, source = str(old["name"]).split(" #")[0], "kept"
        else:
            name, source = name_of(f), "generated"
        p["description"] = o["description"] if o and o.get("description") else describe(p)
        p["name_source"] = source
        other = f["behaviour"] or behaviour(p, 0.0)
        if name in names and other and source != "override":
            name = f"{name}, {other.lower()}"
        if name in names:
            name = f"{name} #{sid}"
        p["name"] = name
        names.append(name)
    return tuple(names)


def _same(old: dict[str, str] | None, new: dict[str, str]) -> bool:
    keys = ("buyer", "state", "tier", "frequency")
    return old is not None and all(old.get(k) == new[k] for k in keys)
