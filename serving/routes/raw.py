"""Hot routes without FastAPI's per-request parameter solving.

FastAPI validates every declared parameter through pydantic on each request; on the
lookup routes that is a large share of a request that does one Redis read and a few
microseconds of arithmetic (docs/serving.md, "Where the time goes"). A
:class:`RawRoute` keeps the endpoint's signature for OpenAPI (parameters, bounds,
response model) but serves a request by calling the endpoint with the arguments its
``parse`` function reads straight from the request. ``parse`` must apply the same
bounds as the signature and raise :class:`~segstream.serving.errors.InvalidInput` naming the
field; a test posts bad values to both kinds of route.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from segstream.serving.errors import InvalidInput, invalid_input

Endpoint = TypeVar("Endpoint", bound=Callable[..., Coroutine[Any, Any, Response]])
Parse = Callable[[Request], dict[str, Any]]
ParseBody = Callable[[Request], Coroutine[Any, Any, dict[str, Any]]]
_PARSE_ATTR = "__segstream_parse__"

MAX_USER_ID = 256
_TRUE = {"1", "true", "t", "yes", "y", "on"}  # what pydantic accepts for a bool
_FALSE = {"0", "false", "f", "no", "n", "off"}


def parsed_by(parse: Parse | ParseBody) -> Callable[[Endpoint], Endpoint]:
    """Mark an endpoint as served through ``parse`` (register it with
    ``route_class_override=RawRoute``); an ``async`` parse may read the body."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _PARSE_ATTR, parse)
        return endpoint

    return mark


class RawRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        parse = getattr(endpoint, _PARSE_ATTR)
        if inspect.iscoroutinefunction(parse):
            parse_body: ParseBody = parse

            async def handler_body(request: Request) -> Response:
                response: Response = await endpoint(**await parse_body(request))
                return response

            return handler_body
        parse_query: Parse = parse

        async def handler(request: Request) -> Response:
            response: Response = await endpoint(**parse_query(request))
            return response

        return handler


def user_id_of(request: Request) -> str:
    user_id: str = request.path_params["user_id"]
    if not 1 <= len(user_id) <= MAX_USER_ID:
        raise InvalidInput(f"path.user_id: String should have 1 to {MAX_USER_ID} "
                           f"characters, got {len(user_id)}", field="path.user_id")
    return user_id


def bool_of(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise InvalidInput(f"query.{name}: Input should be a valid boolean, got {raw!r}",
                       field=f"query.{name}")


ModelT = TypeVar("ModelT", bound=BaseModel)


async def body_of(request: Request, model: type[ModelT]) -> ModelT:
    """The JSON body validated by ``model`` (what FastAPI would do for a body
    parameter, without its solve pass); an error names ``body.<field>`` as FastAPI's do
    (``errors.invalid_input``)."""
    raw = await request.body()
    try:
        raw.decode()
    except UnicodeDecodeError as exc:  # the 422 errors.on_http makes of FastAPI's 400
        raise InvalidInput(f"body: the request body is not valid JSON ({exc})",
                           field="body") from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_input(exc.errors(), ("body",)) from None
