"""Feeds an :class:`~segstream.training.update.Updater` from the ``features`` topic.

The topic is read without a consumer group (``adapters.topic_reader``), with offsets in
``<data_dir>/checkpoints/training/offsets.json``, saved after each published
candidate, so a restart resumes where it left off.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from segstream.adapters.topic_reader import FileOffsets, TopicReader
from segstream.config import Settings
from segstream.core.aggregates import RecordMismatch
from segstream.training.data import decode_messages, snapshot
from segstream.training.update import Updater

#: Messages read with none decodable: past this, a setting differs (the params of the
#: streaming job), not a stray message; the update stops and says so.
SYSTEMATIC_MISMATCH = 1000
def checkpoint_path(settings: Settings) -> Path:
    return settings.data_dir / "checkpoints" / "training" / "offsets.json"


def consume(settings: Settings, updater: Updater, *, once: bool, bootstrap: str,
            poll_ms: int = 500, on_batch: Callable[[int], None] | None = None,
            stop: Callable[[], bool] = lambda: False) -> int:
    """Feed ``updater`` from the features topic; with ``once``, stop at the current end.

    Returns the number of messages read. Offsets are checkpointed after each
    published candidate and at the end (with ``once``, after publishing what was learned
    since the last candidate). A registry failure while publishing propagates before the
    offsets are saved, so nothing read since the last candidate is skipped on a rerun.
    """
    topic = settings.topic_features
    reader = TopicReader(bootstrap, topic, FileOffsets(checkpoint_path(settings)))
    read = decoded = 0
    try:
        end = reader.end_offsets() if once else {}

        def done() -> bool:
            return once and reader.reached(end)

        params = updater.params
        while not done() and not stop():
            messages = [(r.key, r.value) for r in reader.poll(poll_ms, settings.update_batch_rows)
                        if r.value is not None and r.offset < end.get(r.partition, r.offset + 1)]
            if not messages:
                continue
            read += len(messages)
            users, aggs = decode_messages(messages, params, topic, require_one=False)
            decoded += len(users)
            if decoded == 0 and read >= SYSTEMATIC_MISMATCH:
                raise RecordMismatch(
                    f"none of the first {read:,} messages on {topic} is a record of this "
                    "process's feature params or layout (see the warnings): align the "
                    "updater's settings with the streaming job's")
            if not len(users):
                continue
            # as of the stream time: the newest event time read so far, this batch included
            as_of = max(updater.stream_ms, int(aggs["last_ms"].max()))
            published = updater.feed(snapshot(users, aggs, as_of, params, topic))
            if on_batch is not None:
                on_batch(len(messages))
            if published:
                reader.save()
        if once and updater.rows_since_publish > 0 and len(updater.window) >= 10 * updater.parent.k:
            # what this run learned since its last candidate, published before the offsets
            # move past it: if the registry fails here, a rerun reads those rows again
            updater.publish()
        reader.save()
    finally:
        reader.close()
    return read
