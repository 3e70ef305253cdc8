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
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

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


class Conflict(ServingError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ServingError):
    status = 413
    code = "payload_too_large"


class Unavailable(ServingError):
    status = 503
    code = "unavailable"


def error_response(exc: ServingError) -> Response:
    headers = {"WWW-Authenticate": "ApiKey"} if exc.status == 401 else None
    return Response(orjson.dumps(exc.body()), status_code=exc.status,
                    media_type="application/json", headers=headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def from_validation(exc: RequestValidationError) -> InvalidInput:
    errors = exc.errors()
    details = [{"field": _field_path(e.get("loc", ())), "reason": str(e.get("msg", ""))}
               for e in errors]
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

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        cls = _HTTP_MAP.get(exc.status_code)
        if cls is None:
            err = ServingError(str(exc.detail))
            err.status, err.code = exc.status_code, "http_error"
        else:
            err = cls(str(exc.detail))
        return error_response(err)

    app.add_exception_handler(ServingError, on_serving)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
