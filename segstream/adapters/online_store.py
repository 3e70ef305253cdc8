"""Layout of a user's online record in Redis and on the `features` topic (shared by
writers and readers).

One Redis hash per user, ``seg:features:{user_id}``, with four fields:

=======  ======================================================================
``agg``  the user's aggregates: ``segstream.core.aggregates.encode`` bytes (layout
         version, feature-params fingerprint, packed fields; ~0.9 kB)
``n``    accepted events folded into it (decimal text): the record's version
``ts``   the user's newest event time, epoch ms (decimal text)
``upd``  when the record was written, epoch ms (decimal text)
=======  ======================================================================

Readers evaluate features from ``agg`` as of any time (``aggregates.evaluate``).
Writers go through :data:`UPSERT_LUA`, which skips a record older than the stored one
by ``(ts, n)``, so a replayed or out-of-order micro-batch never overwrites newer
aggregates (``ts`` alone cannot order them: a late event adds to a record without
moving its newest time; ``n`` alone cannot either: a user whose streaming state
expired starts again from a small count, with a newer ``ts``).

A `features` topic message is keyed by the user id; its value is the same ``agg``
bytes, and the header ``upd`` carries the write time. Training builds point-in-time
snapshots from them (and from the Parquet history, which holds the same bytes).

Examples
--------
>>> from segstream.core.aggregates import FeatureParams, empty
>>> params = FeatureParams()
>>> rec = encode_record(empty(1)[0], params, updated_ms=6)
>>> decode_record([rec["agg"], rec["n"], rec["ts"], rec["upd"]], params).events
0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segstream.core.aggregates import FeatureParams, decode, encode

FIELDS: tuple[str, str, str, str] = ("agg", "n", "ts", "upd")
HEADER_UPDATED = "upd"

#: KEYS[1] = record key; ARGV = agg, n, ts, upd, ttl_s. Returns 1 if written, 0 if the
#: stored record is newer by (ts, n): a stale update is skipped.
UPSERT_LUA = """
local cur = redis.call('HMGET', KEYS[1], 'ts', 'n')
if cur[1] then
  local ts, n = tonumber(cur[1]), tonumber(cur[2] or 0)
  if ts > tonumber(ARGV[3]) or (ts == tonumber(ARGV[3]) and n > tonumber(ARGV[2])) then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'agg', ARGV[1], 'n', ARGV[2], 'ts', ARGV[3], 'upd', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


@dataclass(frozen=True, slots=True)
class OnlineRecord:
    aggregates: np.void  # one AGG_DTYPE record
    events: int
    last_event_ms: int
    updated_ms: int


def encode_record(agg: np.void | np.ndarray, params: FeatureParams, *, updated_ms: int
                  ) -> dict[str, bytes]:
    """The hash fields of one record."""
    one = np.atleast_1d(agg)
    return {"agg": encode(one, params)[0], "n": str(int(one["events"][0])).encode(),
            "ts": str(int(one["last_ms"][0])).encode(), "upd": str(int(updated_ms)).encode()}


def decode_record(values: Sequence[bytes | None], params: FeatureParams
                  ) -> OnlineRecord | None:
    """Decode an ``HMGET key agg n ts upd`` reply; ``None`` if the key is absent.
    Raises ``aggregates.RecordMismatch`` for a record of other params or layout."""
    agg, n, ts, upd = values
    if agg is None:
        return None
    return OnlineRecord(decode([agg], params)[0], int(n or 0), int(ts or 0), int(upd or 0))
