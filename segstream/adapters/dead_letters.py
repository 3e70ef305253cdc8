"""Dead letters, bounded: what goes on the DLQ topic for a rejected record.

A record the broker accepted can be far larger than what the DLQ topic takes (the
validator rejects anything over ``MAX_RECORD_BYTES``, but the broker may accept 10 MB,
while a producer's and most brokers' default limit is about 1 MB). Producing it whole
fails the micro-batch, the replay of that batch fails again, and the stream never gets
past the record. So a dead letter on the topic is bounded:

* a value up to ``DLQ_MAX_VALUE_BYTES`` and a key up to ``DLQ_MAX_KEY_BYTES`` go as
  they are, as before;
* a larger one goes as its first ``DLQ_EXCERPT_BYTES`` bytes, with headers
  ``original_bytes`` (its size) and ``sha256`` (of the whole value, or key), and
  ``stored``: the dead-letter store file that holds the full bytes (a Parquet file under
  ``Settings.dead_letter_dir``, path relative to it, named by its letters so it is never
  overwritten by others). The store is written *before* the topic, so a letter on the
  topic always has its bytes. The store keeps raw payloads (possibly personal data) and
  has no retention of its own: give its directory one (docs/streaming.md).
* ``detail`` is cut to ``DLQ_MAX_DETAIL_CHARS``.

Everything else (reason, source) is unchanged, so a consumer of the DLQ sees the same
record for every ordinary reject; only the oversized ones carry the extra headers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from segstream.core.contract import (
    DLQ_HEADER_DETAIL,
    DLQ_HEADER_KEY_SHA256,
    DLQ_HEADER_ORIGINAL_BYTES,
    DLQ_HEADER_ORIGINAL_KEY_BYTES,
    DLQ_HEADER_REASON,
    DLQ_HEADER_SHA256,
    DLQ_HEADER_SOURCE,
    DLQ_HEADER_STORED,
)

#: A rejected value up to this size goes to the DLQ topic whole (4x MAX_RECORD_BYTES,
#: a sixteenth of Kafka's default message.max.bytes).
DLQ_MAX_VALUE_BYTES = 64 * 1024
DLQ_MAX_KEY_BYTES = 1024
#: The prefix of an oversized value (or key) kept on the topic, for a first look.
DLQ_EXCERPT_BYTES = 1024
DLQ_MAX_DETAIL_CHARS = 1024
#: Columns of a dead-letter store file: one row per oversized letter, full bytes.
STORE_COLUMNS = ("source", "reason", "detail", "key", "value", "key_bytes", "value_bytes",
                 "key_sha256", "value_sha256")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected record: its original bytes, why, and where it came from."""

    key: bytes | None
    value: bytes | None  # None for a tombstone
    reason: str
    detail: str
    source: str  # "events:2@1045", "replay:file.csv:17"

    @property
    def oversized(self) -> bool:
        return (len(self.value or b"") > DLQ_MAX_VALUE_BYTES
                or len(self.key or b"") > DLQ_MAX_KEY_BYTES)


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """What is produced to the DLQ topic for one letter."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def _sha256(data: bytes | None) -> str:
    return hashlib.sha256(data or b"").hexdigest()


def topic_record(letter: DeadLetter, stored: str | None = None) -> TopicRecord:
    """The bounded DLQ record of ``letter``; ``stored`` names the store file that holds
    its full bytes (required when the letter is oversized).

    >>> small = DeadLetter(b"u1", b'{"x":1}', "missing_field", "no user_id", "events:0@7")
    >>> r = topic_record(small)
    >>> r.value, sorted(r.headers)
    (b'{"x":1}', ['detail', 'reason', 'source'])
    >>> big = DeadLetter(b"u1", b"x" * 100_000, "record_too_large", "too big", "events:0@8")
    >>> r = topic_record(big, stored="stream/batch=000000003.parquet")
    >>> len(r.value), r.headers["original_bytes"], r.headers["stored"]
    (1024, b'100000', b'stream/batch=000000003.parquet')
    """
    headers = {
        DLQ_HEADER_REASON: letter.reason.encode(),
        DLQ_HEADER_DETAIL: letter.detail[:DLQ_MAX_DETAIL_CHARS].encode(),
        DLQ_HEADER_SOURCE: letter.source.encode(),
    }
    if not letter.oversized:
        return TopicRecord(letter.key, letter.value, headers)
    if stored is None:
        raise ValueError(f"dead letter from {letter.source} is oversized: store it first")
    headers[DLQ_HEADER_STORED] = stored.encode()
    key, value = letter.key, letter.value
    if value is not None and len(value) > DLQ_MAX_VALUE_BYTES:
        headers[DLQ_HEADER_ORIGINAL_BYTES] = str(len(value)).encode()
        headers[DLQ_HEADER_SHA256] = _sha256(value).encode()
        value = value[:DLQ_EXCERPT_BYTES]
    if key is not None and len(key) > DLQ_MAX_KEY_BYTES:
        headers[DLQ_HEADER_ORIGINAL_KEY_BYTES] = str(len(key)).encode()
        headers[DLQ_HEADER_KEY_SHA256] = _sha256(key).encode()
        key = key[:DLQ_EXCERPT_BYTES]
    return TopicRecord(key, value, headers)


class DeadLetterStore:
    """Parquet files of oversized dead letters' full bytes, under ``root``.

    One file per name (a stream batch id, a replay run): written to a temporary name
    and renamed, so a replayed batch rewrites the same file and a reader never sees a
    partial one.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, name: str, letters: Sequence[DeadLetter]) -> str:
        """Store ``letters`` as ``name`` (``"stream/batch=000000012-<digest>.parquet"``);
        return ``name``, the value of the letters' ``stored`` header."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = pd.DataFrame({
            "source": [x.source for x in letters], "reason": [x.reason for x in letters],
            "detail": [x.detail for x in letters], "key": [x.key for x in letters],
            "value": [x.value for x in letters],
            "key_bytes": [len(x.key or b"") for x in letters],
            "value_bytes": [len(x.value or b"") for x in letters],
            "key_sha256": [_sha256(x.key) for x in letters],
            "value_sha256": [_sha256(x.value) for x in letters],
        }, columns=list(STORE_COLUMNS))
        tmp = path.with_name(path.name + ".tmp")
        rows.to_parquet(tmp, index=False)
        os.replace(tmp, path)
        return name

    def read(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.root / name)


def store_name(prefix: str, letters: Sequence[DeadLetter]) -> str:
    """``prefix-<digest of the letters>.parquet``: the same letters (a replayed batch)
    get the same file; other letters under the same prefix (batch ids restart with a
    new checkpoint, a file of the same name replayed again) never overwrite it.

    >>> a = DeadLetter(None, b"x", "r", "d", "events:0@1")
    >>> store_name("stream/batch=000000003", [a])
    'stream/batch=000000003-295c94621593bf82.parquet'
    """
    digest = hashlib.sha256()
    for x in letters:
        digest.update(f"{x.source}\0{_sha256(x.key)}\0{_sha256(x.value)}\n".encode())
    return f"{prefix}-{digest.hexdigest()[:16]}.parquet"


def bounded_records(letters: Sequence[DeadLetter], store: DeadLetterStore, prefix: str
                    ) -> list[TopicRecord]:
    """The DLQ topic records of ``letters``, the oversized ones stored first (in a file
    named by :func:`store_name`)."""
    big = [x for x in letters if x.oversized]
    stored = store.write(store_name(prefix, big), big) if big else None
    return [topic_record(x, stored if x.oversized else None) for x in letters]
