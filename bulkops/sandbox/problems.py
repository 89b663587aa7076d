"""Telnyx-shaped error answers: ``{"errors": [{"code", "title", "detail", "source"}]}``.

Handlers raise ``ApiProblem``; one middleware turns it into the JSON body, so
every error the sandbox gives has the same shape and its code as a string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

from aiohttp import web

dumps = partial(json.dumps, separators=(",", ":"), allow_nan=False)

# Telnyx error codes (docs/telnyx/API-NOTES.md, "Errors").
NOT_FOUND = "10005"
UNEXPECTED = "10007"
AUTH_FAILED = "10009"
RATE_LIMITED = "10011"
INVALID = "10015"


@dataclass(frozen=True, slots=True)
class Source:
    pointer: str | None = None  # JSON pointer into the request body
    parameter: str | None = None  # offending query or path parameter

    def as_json(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.pointer is not None:
            out["pointer"] = self.pointer
        if self.parameter is not None:
            out["parameter"] = self.parameter
        return out


class ApiProblem(Exception):
    """An error answer the sandbox gives on purpose (4xx, or an injected 5xx)."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        source: Source | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {title}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.source = source or Source()
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "source": self.source.as_json(),
        }
        if self.status == 429:
            error["meta"] = {"url": "https://developers.telnyx.com/docs/overview/errors/10011"}
        return {"errors": [error]}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers, dumps=dumps)


def invalid(
    detail: str, *, pointer: str | None = None, parameter: str | None = None, status: int = 422
) -> ApiProblem:
    """400/422 code 10015: the request or a value in it is wrong."""
    title = "Invalid value" if status == 422 else "Bad Request"
    return ApiProblem(status, INVALID, title, detail, Source(pointer=pointer, parameter=parameter))


def bad_parameter(parameter: str, detail: str) -> ApiProblem:
    """400 code 10015 naming the query or path parameter at fault."""
    return invalid(detail, parameter=parameter, status=400)


def not_found(detail: str, *, parameter: str | None = None) -> ApiProblem:
    return ApiProblem(404, NOT_FOUND, "Resource not found", detail, Source(parameter=parameter))


def unauthorized() -> ApiProblem:
    # Never echo what was presented: it may be a real key sent to the wrong place.
    return ApiProblem(
        401,
        AUTH_FAILED,
        "Authentication failed",
        "The API key in the Authorization header is missing or not valid for this account. "
        "Send 'Authorization: Bearer <API key>'.",
    )


def server_error(status: int, detail: str = "An unexpected error occurred; retry the request.") -> ApiProblem:
    titles = {500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable"}
    return ApiProblem(status, UNEXPECTED, titles.get(status, "Unexpected error"), detail)
