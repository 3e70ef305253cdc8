"""Layout of a user's online feature record in Redis (shared by writer and reader).

One Redis hash per user, ``seg:features:{user_id}``, with four fields:

=======  ======================================================================
``vec``  the feature vector in spec order, little-endian float64, packed
``spec`` the feature spec version the vector was computed with
``ts``   the user's last event time, epoch ms (decimal text)
``upd``  when the record was written, epoch ms (decimal text)
=======  ======================================================================

A packed vector is one bulk string: serving reads a user with one ``HMGET`` and
decodes it with one ``numpy.frombuffer`` instead of parsing ~20 fields. Writers go
through :data:`UPSERT_LUA`, which skips an update whose ``ts`` is older than the
stored one, so a replayed or out-of-order micro-batch never overwrites newer data.

Examples
--------
>>> rec = encode_record([1.0, 2.5] + [0.0] * 17, last_event_ms=5, updated_ms=6)
>>> decode_record([rec["vec"], rec["spec"], rec["ts"], rec["upd"]]).vector[:2].tolist()
[1.0, 2.5]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segstream.contract import FEATURE_SPEC, FeatureSpec

KEY_PREFIX = "seg:features:"
FIELDS: tuple[str, str, str, str] = ("vec", "spec", "ts", "upd")
VECTOR_DTYPE = np.dtype("<f8")

#: KEYS[1] = record key; ARGV = vec, spec, ts, upd, ttl_s. Returns 1 if written,
#: 0 if the stored record is newer (stale update skipped).
UPSERT_LUA = """
local cur = redis.call('HGET', KEYS[1], 'ts')
if cur and tonumber(cur) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'vec', ARGV[1], 'spec', ARGV[2], 'ts', ARGV[3], 'upd', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def feature_key(user_id: str) -> str:
    return KEY_PREFIX + user_id


@dataclass(frozen=True, slots=True)
class OnlineRecord:
    vector: np.ndarray
    spec_version: str
    last_event_ms: int
    updated_ms: int


def encode_record(
    vector: Sequence[float] | np.ndarray,
    *,
    last_event_ms: int,
    updated_ms: int,
    spec: FeatureSpec = FEATURE_SPEC,
) -> dict[str, bytes]:
    arr = np.asarray(vector, dtype=VECTOR_DTYPE)
    if arr.shape != (len(spec),):
        raise ValueError(
            f"feature vector has shape {arr.shape}, spec {spec.version} needs ({len(spec)},)"
        )
    return {
        "vec": arr.tobytes(),
        "spec": spec.version.encode(),
        "ts": str(int(last_event_ms)).encode(),
        "upd": str(int(updated_ms)).encode(),
    }


def decode_record(values: Sequence[bytes | None]) -> OnlineRecord | None:
    """Decode an ``HMGET key vec spec ts upd`` reply; ``None`` if the key is absent."""
    vec, spec, ts, upd = values
    if vec is None:
        return None
    return OnlineRecord(
        vector=np.frombuffer(vec, dtype=VECTOR_DTYPE),
        spec_version=(spec or b"").decode(),
        last_event_ms=int(ts or 0),
        updated_ms=int(upd or 0),
    )


# --------------------------------------------------------------- `features` topic
# One JSON message per user update, keyed by user id (so a user's updates stay in
# order within a partition). Read by training (incremental updates) and serving
# (segment-change detection).


def encode_feature_message(
    user_id: str,
    vector: Sequence[float] | np.ndarray,
    *,
    last_event_ms: int,
    updated_ms: int,
    spec: FeatureSpec = FEATURE_SPEC,
) -> bytes:
    """
    >>> msg = encode_feature_message("u1", [0.5] * 19, last_event_ms=1, updated_ms=2)
    >>> decode_feature_message(msg).user_id
    'u1'
    """
    import orjson

    values = [float(v) for v in vector]
    if len(values) != len(spec):
        raise ValueError(f"vector has {len(values)} values, spec {spec.version} needs {len(spec)}")
    return orjson.dumps({"user_id": user_id, "spec_version": spec.version,
                         "last_event_ms": int(last_event_ms), "updated_ms": int(updated_ms),
                         "vector": values})


@dataclass(frozen=True, slots=True)
class FeatureMessage:
    user_id: str
    record: OnlineRecord


def decode_feature_message(value: bytes) -> FeatureMessage:
    import orjson

    obj = orjson.loads(value)
    return FeatureMessage(obj["user_id"], OnlineRecord(
        vector=np.asarray(obj["vector"], dtype=VECTOR_DTYPE),
        spec_version=obj["spec_version"],
        last_event_ms=int(obj["last_event_ms"]),
        updated_ms=int(obj["updated_ms"]),
    ))
