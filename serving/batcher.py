"""Assign the single-user lookups of one event-loop turn together.

Concurrent lookups already share one Redis write and one read (``redis_pipe``), so
their replies arrive in one ``data_received`` and their handlers resume in the same
event-loop turn. Each would then run :meth:`SegmentModel.assign` on one row: about
twenty small numpy calls whose fixed cost is most of a lookup's own time. Here each
handler hands its evaluated row over and waits; one callback, scheduled behind the
handlers already woken in that turn, assigns every row at once and answers each.
Rows are independent in ``assign`` (scaling, distances, softmax, reasons are per
row), so an answer is the same as alone, to float rounding (a matrix product over
several rows may round the last bits differently); a test compares them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

from segstream.serving.predict import Served

#: (user id, record write time ms, as-of time ms) of one lookup
Meta = tuple[str, int | None, int | None]
Run = Callable[[Served, np.ndarray, list[Meta]], list[dict[str, Any]]]


class TurnBatcher:
    def __init__(self, run: Run) -> None:
        self._run = run
        self._pending: list[tuple[Served, np.ndarray, Meta, asyncio.Future[Any]]] = []
        self._scheduled = False

    async def submit(self, served: Served, row: np.ndarray, meta: Meta) -> dict[str, Any]:
        """The answer for one evaluated feature row under ``served``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending.append((served, row, meta, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        groups: dict[int, list[tuple[Served, np.ndarray, Meta, asyncio.Future[Any]]]] = {}
        for item in pending:  # a model swap mid-turn: each request keeps its own model
            groups.setdefault(id(item[0]), []).append(item)
        for items in groups.values():
            live = [it for it in items if not it[3].done()]  # a cancelled request: skip
            if not live:
                continue
            try:
                answers = self._run(live[0][0], np.stack([it[1] for it in live]),
                                    [it[2] for it in live])
            except Exception as exc:  # each waiting request fails with the error
                for it in live:
                    it[3].set_exception(exc)
                continue
            for it, ans in zip(live, answers, strict=True):
                it[3].set_result(ans)
