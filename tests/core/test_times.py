"""One reading of as-of times: the CLI's ``--as-of`` and the API's ``as_of`` accept the
same forms and give the same epoch ms (``segstream.core.times``)."""

from __future__ import annotations

import pytest
import typer

from segstream.app.console import as_of_option
from segstream.core.times import format_time, parse_as_of
from segstream.serving.errors import InvalidInput
from segstream.serving.records import parse_as_of as api_as_of

FORMS = ["2026-12-01T10:00:00Z", "2026-12-01T11:00:00+01:00", "2026-12-01T10:00:00",
         "2026-12-01", "1796119200", "1796119200000", "1796119200000000", " 1796119200 "]
BAD = ["yesterday", "2026-13-01", "1969-12-31", "-5", "19970101", ""]


@pytest.mark.parametrize("text", FORMS)
def test_cli_and_api_read_the_same_time(text: str) -> None:
    ms = parse_as_of(text)
    assert as_of_option(text) == api_as_of(text, "query.as_of") == ms
    assert format_time(ms).startswith("2026-12-01T")


@pytest.mark.parametrize("text", BAD)
def test_cli_and_api_refuse_the_same_text(text: str) -> None:
    with pytest.raises(typer.Exit):
        as_of_option(text)
    with pytest.raises(InvalidInput) as exc:
        api_as_of(text, "query.as_of")
    assert exc.value.field == "query.as_of" and "query.as_of" in str(exc.value)
