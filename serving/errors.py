"""One exception root for the API; each subclass knows its HTTP status.

:func:`install_handlers` registers the one translation to JSON. Every user-input
error is a 4xx whose body names the field and the reason::

    {"error": {"code": "invalid_input", "message": "...", "field": "body.monetary"}}
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response


class ServingError(Exception):
    """Root of every error the API answers with; ``status`` is its HTTP status."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None,
                 details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details
        self.headers = headers  # e.g. a 405's Allow (RFC 9110 requires it)

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        if self.details:
            err["details"] = self.details
        return {"error": err}


class InvalidInput(ServingError):
    status = 422
    code = "invalid_input"


class Unauthorized(ServingError):
    status = 401
    code = "unauthorized"


class NotFound(ServingError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ServingError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ServingError):
    status = 413
    code = "payload_too_large"


class Unavailable(ServingError):
    status = 503
    code = "unavailable"


def error_response(exc: ServingError) -> Response:
    headers = dict(exc.headers or {})
    if exc.status == 401:
        headers["WWW-Authenticate"] = "ApiKey"
    return Response(orjson.dumps(exc.body()), status_code=exc.status,
                    media_type="application/json", headers=headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def from_validation(exc: RequestValidationError) -> InvalidInput:
    return invalid_input(exc.errors())


def invalid_input(errors: Any, prefix: tuple[str, ...] = ()) -> InvalidInput:
    """The 422 of pydantic's ``errors()``, each field path after ``prefix`` (FastAPI's
    own errors already start with ``body`` or ``query``; a model validated by hand does
    not)."""
    details = [{"field": _field_path((*prefix, *e.get("loc", ()))),
                "reason": str(e.get("msg", ""))} for e in errors]
    first = details[0] if details else {"field": "body", "reason": "invalid request"}
    return InvalidInput(f"{first['field']}: {first['reason']}", field=first["field"],
                        details=details)


_HTTP_MAP: dict[int, type[ServingError]] = {
    401: Unauthorized, 404: NotFound, 405: MethodNotAllowed, 413: PayloadTooLarge,
}


def install_handlers(app: FastAPI) -> None:
    """The one translation of exceptions to JSON responses."""

    async def on_serving(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServingError)
        return error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(from_validation(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        cls = _HTTP_MAP.get(exc.status_code)
        headers = dict(exc.headers) if exc.headers else None
        message = str(exc.detail)
        if exc.status_code == 400:
            # FastAPI's one 400: a body it could not read as JSON (e.g. not UTF-8); the
            # cause is chained. Answered as the 422 of any other malformed body.
            cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
            return error_response(InvalidInput(f"body: the request body is not valid "
                                               f"JSON{cause}", field="body"))
        if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
            allow = f" (allowed: {headers['Allow']})" if headers and "Allow" in headers else ""
            message = f"{message}: {request.method} {request.url.path}{allow}"
        if cls is None:
            err = ServingError(message, headers=headers)
            err.status, err.code = exc.status_code, "http_error"
        else:
            err = cls(message, headers=headers)
        return error_response(err)

    app.add_exception_handler(ServingError, on_serving)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
