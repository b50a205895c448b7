"""Every error the API returns is JSON ``{code, message, field}`` with the right HTTP status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from store.artifacts import ArtifactIntegrityError
from store.queue import IdempotencyConflictError

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "unavailable",
}


class ErrorBody(BaseModel):
    """The body of every error response."""

    code: str = Field(description="machine-readable error code", examples=["validation_error"])
    message: str = Field(description="what went wrong, for a person", examples=["budget: must be >= 1"])
    field: str | None = Field(None, description="the request field at fault (dotted path), if any", examples=["budget"])


class ApiError(Exception):
    """An error with an HTTP status, a code, a message and optionally the field at fault.

    Args:
        status: the HTTP status.
        code: machine-readable code, e.g. ``not_found``.
        message: what went wrong.
        field: the request field at fault (dotted path).
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def not_found(what: str, ident: object, field: str | None = None) -> ApiError:
    """A 404 for `what` `ident` (also used for other users' resources, so that existence does not leak)."""
    return ApiError(404, "not_found", f"{what} {ident!r} not found", field)


def invalid(field: str, message: str) -> ApiError:
    """A 422 naming the field."""
    return ApiError(422, "validation_error", f"{field}: {message}", field)


def error_response(status: int, code: str, message: str, field: str | None = None, **headers: str) -> JSONResponse:
    """The JSON response of an error."""
    body = ErrorBody(code=code, message=message, field=field).model_dump()
    return JSONResponse(body, status_code=status, headers=headers or None)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """A pydantic error location as a dotted path without the ``body``/``query``/... prefix."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or None


def validation_error(errors: list[Any], prefix: str = "") -> ApiError:
    """A 422 from pydantic errors: the first error's field and message (the others follow in the message)."""
    messages = []
    first_field: str | None = None
    for error in errors:
        path = field_path(error.get("loc", ()))
        path = f"{prefix}.{path}" if prefix and path else prefix or path
        first_field = first_field or path
        messages.append(f"{path}: {error.get('msg')}" if path else str(error.get("msg")))
    return ApiError(422, "validation_error", "; ".join(messages) or "invalid request", first_field)


def invalid_json(error: dict[str, Any], document: object) -> ApiError:
    """A 422 naming ``body`` for a request body that is not JSON, saying where parsing stopped.

    Args:
        error: FastAPI's ``json_invalid`` error; its location ends with the character offset.
        document: the body as text, to turn the offset into a line and column.
    """
    offset = (error.get("loc") or (None,))[-1]
    where = ""
    if isinstance(offset, int):
        where = f" at position {offset}"
        if isinstance(document, str):
            line, column = document.count("\n", 0, offset) + 1, offset - document.rfind("\n", 0, offset)
            where = f" at line {line}, column {column} (position {offset})"
    reason = (error.get("ctx") or {}).get("error") or "cannot be parsed"
    return ApiError(422, "validation_error", f"the request body is not valid JSON: {reason}{where}", "body")


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    return error_response(exc.status, exc.code, exc.message, exc.field, **headers)


async def _request_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if errors and errors[0].get("type") == "json_invalid":
        error = invalid_json(errors[0], exc.body)
    else:
        error = validation_error(errors)
    return error_response(error.status, error.code, error.message, error.field)


async def _pydantic_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    error = validation_error(list(exc.errors()))
    return error_response(error.status, error.code, error.message, error.field)


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    unreadable = unreadable_json(exc.__cause__)
    if exc.status_code == 400 and unreadable is not None:
        return error_response(422, "validation_error", unreadable, "body")
    code = _STATUS_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail))


def unreadable_json(cause: BaseException | None) -> str | None:
    """Why a syntactically valid JSON body could not be read, for the errors FastAPI folds into a bare 400.

    Python's parser refuses integers of over 4,300 digits (``ValueError``) and nesting deeper than
    its recursion limit (``RecursionError``); FastAPI answers both with "There was an error parsing
    the body", which names neither the cause nor the field.
    """
    if isinstance(cause, RecursionError):
        return "body: the JSON is nested too deeply to be read (no request needs more than a few levels)"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return "body: a number has over 4,300 digits; every number this API accepts is far smaller"
    return None


async def _idempotency(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(409, "idempotency_conflict", str(exc), "Idempotency-Key")


ARTIFACT_CORRUPT = (
    "the stored file is damaged (its sha256 differs from the one recorded when it was written), so none of it was "
    "sent; the operator has been told in the server log and /readyz, and retrying will not help until it is restored"
)
"""The message of ``artifact_corrupt``: a 500 rather than a 503, since retrying (our client retries 503) cannot help."""


async def _artifact_corrupt(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ArtifactIntegrityError)
    request.app.state.context.artifact_faults.record(exc, f"{request.method} {request.url.path}")
    return error_response(500, "artifact_corrupt", ARTIFACT_CORRUPT)


async def _internal(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of `app` a JSON `ErrorBody`."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(ValidationError, _pydantic_validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(IdempotencyConflictError, _idempotency)
    app.add_exception_handler(ArtifactIntegrityError, _artifact_corrupt)
    app.add_exception_handler(Exception, _internal)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": code.replace("_", " ")}
    for status, code in _STATUS_CODES.items()
    if status in (400, 401, 404, 409, 413, 422)
}
"""The error responses most routes can give, for the OpenAPI document."""
