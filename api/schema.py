"""OpenAPI extensions: how the API's own authentication classes appear in the schema."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A workspace API key: `Authorization: Bearer rtk_…`.",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.SessionAuthentication"
    name = "session"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}


def public_paths(endpoints):
    """Only the public API belongs in the schema: `/api/v1/…` and the OpenAI-compatible `/v1/…`."""
    return [
        (path, regex, method, callback)
        for path, regex, method, callback in endpoints
        if path.startswith(("/api/v1/", "/v1/")) and not path.startswith("/api/v1/schema/")
    ]


ERROR_SCHEMA = {
    "type": "object",
    "description": "Every refusal of /api/v1/.",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "field": {"type": "string", "nullable": True, "description": "The input at fault."},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "code": {"type": "string", "description": "A machine-readable code."},
    },
    "required": ["detail", "field", "errors", "code"],
}
OPENAI_ERROR_SCHEMA = {
    "type": "object",
    "description": "Every refusal of /v1/ (OpenAI's shape).",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}
# What any operation may answer besides its own responses.
COMMON_ERRORS = {
    "400": "Invalid input (the field at fault is named).",
    "401": "No key, or an invalid, revoked or expired one.",
    "403": "The plan has no API access, or the role may not do this.",
    "404": "No such object in this workspace.",
    "405": "Method not allowed.",
    "406": "Not acceptable.",
    "413": "The body is too large.",
    "415": "Unsupported media type.",
    "429": "Rate limited: retry after `Retry-After` seconds.",
}


def error_responses(result, generator, request, public):
    """Give every operation the common error answers, each with its error shape."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas["OpenAIError"] = OPENAI_ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        ref = "#/components/schemas/" + ("Error" if path.startswith("/api/") else "OpenAIError")
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, description in COMMON_ERRORS.items():
                responses.setdefault(code, {"description": description})
            for code, response in responses.items():
                if code[0] in "45" and "content" not in response:
                    response["content"] = {"application/json": {"schema": {"$ref": ref}}}
    return result
