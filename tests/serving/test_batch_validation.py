"""The batch lookup's bounds as docs/api.md states them: 1 to ``api_max_batch_ids`` ids;
an empty list is a 422 ``invalid_input`` naming ``body.user_ids`` (``min_length=1``),
not an empty 200 answer."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.support.api import Api

pytestmark = pytest.mark.redis


def test_an_empty_batch_is_422_naming_the_field(api_factory: Callable[..., Api]) -> None:
    api = api_factory()
    r = httpx.post(f"{api.url}/v1/users/segments:batch", json={"user_ids": []},
                   headers=api.headers)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_input", "body.user_ids"), error
    assert "at least 1 item" in error["message"], error
