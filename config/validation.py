"""One validation layer for every JSON and form endpoint.

Input is checked at the edge, before any query or write, by DRF serializers built from the
strict fields below; the studio's HTML forms feed the same serializers with `request.POST`
or `request.GET`, so a browser, the JSON API and the public API refuse the same things:

- a JSON body must be an object, at most `JSON_MAX_DEPTH` levels deep (checked on the raw
  bytes before parsing, so 100,000 nested brackets never reach the recursive parser) and
  at most `DATA_UPLOAD_MAX_MEMORY_SIZE` bytes;
- strings are strings (no numbers, lists, objects or null read as text), refuse NUL and
  lone surrogates (PostgreSQL stores neither), and every one has a maximum length;
- whole numbers are whole numbers: no booleans, no floats, no "1.5", and bounded so they
  fit the database column.

Every refusal answers one JSON shape, naming the field at fault::

    {"detail": "<first message>", "field": "<name or null>", "errors": {"<name>": ["…"]}}
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, serializers
from rest_framework.parsers import JSONParser

JSON_MAX_DEPTH = 32
# A JSON string literal, escapes included: removed before counting brackets.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")
_INTEGER = re.compile(r"^[+-]?\d{1,19}$")
POSTGRES_INT_MAX = 2**31 - 1
POSTGRES_BIGINT_MAX = 2**63 - 1


def has_lone_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def json_depth_exceeds(raw: bytes, limit: int = JSON_MAX_DEPTH) -> bool:
    """Whether the JSON text nests arrays and objects deeper than `limit` (no parsing)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for char in _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", raw)):
        if char in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class BodyTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = _("The request body is too large.")
    default_code = "too_large"


class StrictJSONParser(JSONParser):
    """JSON bodies: bounded in size and depth, valid UTF-8, and an object at the top."""

    def parse(self, stream, media_type=None, parser_context=None) -> dict[str, Any]:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if limit is not None and len(raw) > limit:
            raise BodyTooLarge()
        if json_depth_exceeds(raw):
            raise exceptions.ParseError(
                _("The JSON body nests deeper than %(n)d levels.") % {"n": JSON_MAX_DEPTH}
            )
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(_("The body is not valid JSON.")) from exc
        if not isinstance(data, dict):
            raise exceptions.ParseError(_("The JSON body must be an object."))
        return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


class StrictCharField(serializers.CharField):
    """A string and only a string: refuses numbers, booleans, lists, objects, NUL and lone
    surrogates; `max_length` is required."""

    default_error_messages = {
        "invalid": _("Must be a string."),
        "null_characters": _("Must not contain NUL characters."),
        "surrogate_characters": _("Must not contain lone surrogate characters."),
    }

    def __init__(self, *, max_length: int, **kwargs) -> None:
        super().__init__(max_length=max_length, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        if "\x00" in data:
            self.fail("null_characters")
        if has_lone_surrogate(data):
            self.fail("surrogate_characters")
        return super().to_internal_value(data)

    def run_validation(self, data=serializers.empty):
        # DRF calls str() on anything before checking it is blank; refuse non-strings first.
        if data is not serializers.empty and data is not None and not isinstance(data, str):
            self.fail("invalid")
        return super().run_validation(data)


class StrictIntegerField(serializers.IntegerField):
    """A whole number: an int (not a bool, not a float) or a string of digits (forms);
    bounded to fit a PostgreSQL integer unless told otherwise."""

    default_error_messages = {"invalid": _("Must be a whole number.")}

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("min_value", -POSTGRES_INT_MAX)
        kwargs.setdefault("max_value", POSTGRES_INT_MAX)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid")
        if isinstance(data, str):
            if not _INTEGER.match(data.strip()):
                self.fail("invalid")
            data = int(data.strip())
        return data


class StrictBooleanField(serializers.BooleanField):
    """true/false in JSON; "1"/"0", "true"/"false", "on" from forms. Numbers other than the
    form strings are refused."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        if isinstance(data, str) and data.lower() in {"1", "0", "true", "false", "on", "off"}:
            return data.lower() in {"1", "true", "on"}
        self.fail("invalid", input=str(data)[:20])


def serializer_errors(errors: Any) -> tuple[str, str | None, dict[str, list[str]]]:
    """(first message, its field, every message by field) from a serializer's errors."""
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            for inner in value:
                if isinstance(inner, dict | list):
                    walk(prefix, inner)
                else:
                    flat.setdefault(prefix, []).append(str(inner))
        else:
            flat.setdefault(prefix, []).append(str(value))

    walk("", errors)
    if not flat:
        return str(_("Invalid input.")), None, {}
    field, messages = next(iter(flat.items()))
    name = None if field in ("", "non_field_errors") else field
    return messages[0], name, flat


def error_body(detail: str, field: str | None = None, errors: dict | None = None) -> dict:
    """The one error shape every edge answers with."""
    return {"detail": str(detail), "field": field, "errors": errors or {}}


def api_exception_handler(exc, context):
    """DRF's handler, then reshaped into `error_body` (headers such as Retry-After kept)."""
    from rest_framework.views import exception_handler  # imports these settings itself

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail, field, errors = serializer_errors(exc.detail)
    else:
        data = response.data
        detail = data.get("detail", data) if isinstance(data, dict) else data
        field, errors = None, {}
    response.data = error_body(detail, field, errors)
    return response
