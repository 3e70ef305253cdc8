"""A user's last published state, and what a new evaluation changes in it (pure).

The state ``seg:segment:<user>`` is JSON ``{"sid", "since", "rfm", "rfm_since"}``: the
last published segment and RFM group, each with the clock time (ms) it was entered;
with a churn model also ``"band"`` and ``"band_since"``, the churn-risk band and since
when (:func:`band_move`: only an entry into the high band is published).
A new evaluation (segment ``sid``, group ``group`` at clock time ``t``) moves each of
the two on its own, once the user has held the current one for the minimum dwell; a
move not yet due is held back. A first evaluation (and the group of a state written
before groups were kept) is recorded, not published.

>>> s = with_group({"sid": 3, "since": 0}, "Loyal", 10)
>>> s
{'sid': 3, 'since': 0, 'rfm': 'Loyal', 'rfm_since': 10}
>>> m = move(s, 3, "At Risk", 5_000, dwell_ms=1_000)
>>> m.segment, m.group, m.held, m.state["rfm_since"]
(False, True, 0, 5000)
>>> change_id("u1", s, m, 3, "At Risk")
'u1:rfm:Loyal:10:At Risk'
>>> m = move(s, 4, "At Risk", 1_005, dwell_ms=1_000)  # the group's dwell is not over
>>> m.segment, m.group, m.held
(True, False, 1)
>>> change_id("u1", s, m, 4, "At Risk")
'u1:3:0:4'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

State = dict[str, Any]


@dataclass(frozen=True)
class Move:
    state: State  # the state after this evaluation
    segment: bool  # a segment change is published
    group: bool  # an RFM-group change is published
    held: int  # moves held back by the dwell (0-2)

    @property
    def changed(self) -> list[str]:
        """What the change event says changed."""
        return [name for name, moved in (("segment", self.segment),
                                         ("rfm_group", self.group)) if moved]


def first(sid: int, group: str, t: int) -> State:
    """The state of a user seen for the first time (recorded, not published)."""
    return {"sid": sid, "since": t, "rfm": group, "rfm_since": t}


def with_group(cur: State, group: str, t: int) -> State:
    """``cur``, or a state written before RFM groups were kept with ``group`` recorded
    as of ``t`` (not published: there is no previous group to change from)."""
    return cur if "rfm" in cur else {**cur, "rfm": group, "rfm_since": t}


def move(cur: State, sid: int, group: str, t: int, dwell_ms: int) -> Move:
    """The moves of a full state ``cur`` to ``sid`` and ``group`` at ``t``."""
    seg_moved, grp_moved = cur["sid"] != sid, cur["rfm"] != group
    seg = seg_moved and t - cur["since"] >= dwell_ms
    grp = grp_moved and t - cur["rfm_since"] >= dwell_ms
    state = dict(cur)
    if seg:
        state.update(sid=sid, since=t)
    if grp:
        state.update(rfm=group, rfm_since=t)
    return Move(state, seg, grp, int(seg_moved and not seg) + int(grp_moved and not grp))


def change_id(user: str, cur: State, m: Move, sid: int, group: str) -> str:
    """``user:from:since:to`` for a segment change (as before groups were kept),
    ``user:rfm:<from>:<since>:<to>`` for a group change, and the segment's id with
    ``:+rfm:<from>:<since>:<to>`` for both: only committed state and the new values, so
    a change republished after a crash has the same id. Read from the right, the ids
    never meet although user ids may hold ``:``: a segment change ends in an integer,
    a group change in a group name, and the tag four from the end tells the two kinds
    of group change apart.

    >>> cur = {"sid": 3, "since": 0, "rfm": "Loyal", "rfm_since": 10}
    >>> change_id("u1", cur, move(cur, 4, "Lost", 99, 0), 4, "Lost")
    'u1:3:0:4:+rfm:Loyal:10:Lost'
    """
    if not m.group:
        return f"{user}:{cur['sid']}:{cur['since']}:{sid}"
    tail = f"rfm:{cur['rfm']}:{cur['rfm_since']}:{group}"
    return f"{user}:{cur['sid']}:{cur['since']}:{sid}:+{tail}" if m.segment else f"{user}:{tail}"


HIGH_BAND = "high"


def band_move(cur: State, band: str, t: int, dwell_ms: int) -> tuple[State, bool]:
    """(the state after the churn band ``band`` at ``t``, whether an entry into the high
    band is published). The band moves, either way, once the user has held the current
    one for the dwell (a user hovering at the edge enters high once per dwell); a state
    without a band records it, unpublished.

    >>> s, entered = band_move({"sid": 3}, "medium", 0, 1_000)
    >>> s, entered
    ({'sid': 3, 'band': 'medium', 'band_since': 0}, False)
    >>> band_move(s, "high", 500, 1_000)[1], band_move(s, "high", 1_000, 1_000)
    (False, ({'sid': 3, 'band': 'high', 'band_since': 1000}, True))
    """
    if "band" not in cur:
        return {**cur, "band": band, "band_since": t}, False
    if cur["band"] == band or t - cur["band_since"] < dwell_ms:
        return cur, False
    return {**cur, "band": band, "band_since": t}, band == HIGH_BAND


def churn_change_id(user: str, cur: State, band: str) -> str:
    """``user:churn:<from band>:<since>:<to band>``: ends in a band name, which is neither
    an integer (a segment change) nor an RFM group name.

    >>> churn_change_id("u1", {"band": "medium", "band_since": 7}, "high")
    'u1:churn:medium:7:high'
    """
    return f"{user}:churn:{cur['band']}:{cur['band_since']}:{band}"
