"""Every Redis key segstream reads or writes, built in one place.

* ``seg:features:<user>`` (hash, the stream's sink): the user's aggregate record, laid
  out by ``online_store``;
* ``seg:segment:<user>`` (string, the change detector): the last published segment
  and RFM group, JSON ``{"sid", "since", "rfm", "rfm_since"}``;
* ``seg:migrations:<hour start ms>`` (hash, the change detector): the changes committed
  in that hour of change time, ``n`` and ``s:<from>><to>`` / ``g:<from>><to>`` counts
  (``serving/migrations.py``);
* ``seg:churn:segments`` (hash, the change detector's sweep): per segment
  ``s:<segment id>`` -> JSON ``{"users", "mean_risk", "high_share"}`` of the churn
  risk, and ``as_of_ms``, ``measured_ms``, ``segment_model_version``,
  ``churn_model_version``, ``label``, ``horizon_days`` (the catalogue reads it);
* ``seg:offsets:<name>`` (hash, group-less readers): ``topic:partition`` -> next
  offset, and the detector's clocks;
* ``seg:webhooks:dlq`` (list, the dispatcher): deliveries that failed every retry;
* ``seg:exp:{<exp>}:<part>`` (the experiments routes): exposures and conversions.

The experiment name is a Redis Cluster hash tag (``{...}``), so one experiment's keys
share a slot and its Lua scripts run on one node.

>>> feature_key("u1"), user_of_feature_key(b"seg:features:u1")
('seg:features:u1', 'u1')
>>> experiment_key("hero", "stats"), migrations_key(1796083200000)
('seg:exp:{hero}:stats', 'seg:migrations:1796083200000')
"""

from __future__ import annotations

FEATURES_PREFIX = "seg:features:"
FEATURES_PATTERN = FEATURES_PREFIX + "*"
SEGMENT_PREFIX = "seg:segment:"
OFFSETS_PREFIX = "seg:offsets:"
MIGRATIONS_PREFIX = "seg:migrations:"
WEBHOOK_DLQ_KEY = "seg:webhooks:dlq"
CHURN_SEGMENTS_KEY = "seg:churn:segments"


def feature_key(user_id: str) -> str:
    return FEATURES_PREFIX + user_id


def user_of_feature_key(key: bytes | str) -> str:
    text = key.decode() if isinstance(key, bytes) else key
    return text[len(FEATURES_PREFIX):]


def segment_key(user_id: str) -> str:
    return SEGMENT_PREFIX + user_id


def migrations_key(bucket_start_ms: int) -> str:
    return f"{MIGRATIONS_PREFIX}{bucket_start_ms}"


def offsets_key(name: str) -> str:
    return OFFSETS_PREFIX + name


def experiment_key(experiment: str, part: str) -> str:
    return f"seg:exp:{{{experiment}}}:{part}"
