"""The two error shapes of the public API.

`/api/v1/` answers every refusal as ``{"detail": "...", "field": "<name or null>",
"errors": {"<name>": ["..."]}, "code": "<machine code>"}`` (the shape the studio's own
endpoints use, plus a code). `/v1/` answers OpenAI's shape, ``{"error": {"message",
"type", "param", "code"}}``, so the `openai` SDK raises the matching exception.
"""

from __future__ import annotations

from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from billing.ledger import LedgerError
from generation.lifecycle import TakeActionError
from generation.submission import SubmissionError


class ApiError(exceptions.APIException):
    """A refusal naming the input at fault."""

    def __init__(
        self,
        message: str,
        field: str | None = None,
        *,
        status_code: int = 400,
        code: str = "invalid",
    ) -> None:
        super().__init__(message, code)
        self.status_code = status_code
        self.field = field
        self.error_code = code


def from_domain(exc: Exception) -> ApiError | None:
    """Map the domain's refusals (submission, lifecycle, ledger) onto API errors."""
    if isinstance(exc, SubmissionError):
        code = {402: "insufficient_credits", 404: "not_found", 409: "conflict"}.get(
            exc.status, "invalid"
        )
        return ApiError(exc.message, exc.field, status_code=exc.status, code=code)
    if isinstance(exc, TakeActionError):
        return ApiError(str(exc), None, status_code=409, code="conflict")
    if isinstance(exc, LedgerError):
        return ApiError(str(exc), None, status_code=402, code="insufficient_credits")
    return None


def _encodable(text) -> str:
    """The text with any lone surrogate written out as an escape: refusal messages quote
    the input (`"\\ud800" is not a valid choice.`), and a lone surrogate cannot be
    encoded as UTF-8, so the answer itself would fail with a 500."""
    text = str(text)
    if any("\ud800" <= char <= "\udfff" for char in text):
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _flatten(detail) -> dict[str, list[str]]:
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            for inner in value:
                walk(prefix, inner)
        else:
            flat.setdefault(_encodable(prefix), []).append(_encodable(value))

    walk("", detail)
    return flat


def _code_for(exc: Exception, status_code: int) -> str:
    if isinstance(exc, ApiError):
        return exc.error_code
    return {
        400: "invalid",
        401: "unauthenticated",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        406: "not_acceptable",
        409: "conflict",
        413: "too_large",
        415: "unsupported_media_type",
        429: "rate_limited",
    }.get(status_code, "error")


def v1_error_body(message: str, field: str | None, errors: dict, code: str) -> dict:
    return {"detail": _encodable(message), "field": field, "errors": errors, "code": code}


def v1_exception_handler(exc, context):
    exc = from_domain(exc) or exc
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        field, messages = next(iter(errors.items()), ("", [_("Invalid input.")]))
        field = None if field in ("", "non_field_errors") else field
        message = messages[0]
    else:
        data = response.data
        message = data.get("detail", data) if isinstance(data, dict) else data
        field = getattr(exc, "field", None)
        errors = {field: [_encodable(message)]} if field else {}
    response.data = v1_error_body(message, field, errors, _code_for(exc, response.status_code))
    return response


OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    402: "insufficient_quota",
    429: "rate_limit_error",
}


def openai_error(
    message: str, status_code: int, *, param: str | None = None, code: str | None = None
) -> Response:
    return Response(
        {
            "error": {
                "message": _encodable(message),
                "type": OPENAI_TYPES.get(status_code, "api_error"),
                "param": param,
                "code": code,
            }
        },
        status=status_code,
    )


def openai_exception_handler(exc, context):
    exc = from_domain(exc) or exc
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        param, messages = next(iter(errors.items()), ("", [_("Invalid input.")]))
        message = f"{param}: {messages[0]}" if param else messages[0]
        param = param or None
    else:
        data = response.data
        message = data.get("detail", data) if isinstance(data, dict) else data
        param = getattr(exc, "field", None)
    body = openai_error(
        message, response.status_code, param=param, code=_code_for(exc, response.status_code)
    )
    response.data = body.data
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = "Bearer"
    return response
