"""Validate recorded HTTP exchanges against the Telnyx contract (OpenAPI 3.1 subset).

Used by the sandbox's own contract tests and by anyone holding a ``record=True``
sandbox: run the client against it, then ``validate_exchange`` every entry of
``sandbox.recorded`` to prove the requests it sent, and the answers it got,
are what the spec allows.

    from tests.contract.spec import validate_exchange
    for exchange in sandbox.recorded:
        validate_exchange(exchange)

The spec lists no 5xx answers; an injected 5xx is checked against the error
schema (``messaging_Errors``) instead, the shape Telnyx uses for every error.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml  # type: ignore[import-untyped]
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS31Validator

from bulkops.sandbox import RecordedExchange

SPEC_NAME = "messaging-numbers.openapi.yml"
# The repository's own copy of Telnyx's spec (docs/telnyx/, beside API-NOTES.md).
SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "telnyx" / SPEC_NAME
# Short codes and 10DLC: a spec of their own (docs/telnyx/SHORT-CODES-10DLC-NOTES.md).
SHORT_CODES_SPEC_PATH = SPEC_PATH.with_name("short-codes-10dlc.openapi.yml")
SPEC_HOST = "https://api.telnyx.com"  # the spec's server is https://api.telnyx.com/v2


class ContractError(AssertionError):
    """An exchange the spec does not allow; the message says which part and why."""


def spec_path(path: str = "") -> Path:
    """The spec copy an exchange on ``path`` validates against: the short-code and 10DLC
    spec for its paths, the messaging-numbers spec for every other."""
    if "/short_codes" in path or "/10dlc/" in path:
        return SHORT_CODES_SPEC_PATH
    return SPEC_PATH


@functools.cache
def spec_dict(path: Path = SPEC_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded


@functools.cache
def openapi(path: Path = SPEC_PATH) -> OpenAPI:
    return OpenAPI.from_file_path(str(path))


@functools.cache
def _errors_validator() -> OAS31Validator:
    schema = {"$ref": "#/components/schemas/messaging_Errors", "components": spec_dict()["components"]}
    return OAS31Validator(schema)


def _explain(exc: BaseException) -> str:
    """The exception chain, with each JSON-schema error and where it points."""
    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        lines.append(f"{type(current).__name__}: {current}")
        for error in getattr(current, "schema_errors", ()) or ():
            where = getattr(error, "json_path", "$")
            lines.append(f"  at {where}: {getattr(error, 'message', error)}")
        current = current.__cause__ or current.__context__
    return "\n".join(lines)


def _describe(exchange: RecordedExchange) -> str:
    query = f"?{exchange.query}" if exchange.query else ""
    status = "no response" if exchange.status is None else str(exchange.status)
    body = exchange.response_body[:500].decode("utf-8", "replace")
    return f"{exchange.method} {exchange.path}{query} -> {status}\n  response body: {body}"


def _mock_request(exchange: RecordedExchange) -> MockRequest:
    headers = dict(exchange.request_headers)
    content_type = exchange.header("Content-Type", response=False) or "application/json"
    return MockRequest(
        SPEC_HOST,
        exchange.method,
        exchange.path,
        args=parse_qsl(exchange.query, keep_blank_values=True),  # type: ignore[arg-type]
        headers=headers,
        data=exchange.request_body,
        content_type=content_type.split(";")[0].strip(),
    )


def validate_error_body(body: object) -> None:
    """Raise ContractError unless ``body`` is a Telnyx error document (codes as strings)."""
    problems = [f"at {e.json_path}: {e.message}" for e in _errors_validator().iter_errors(body)]
    if not isinstance(body, dict) or not body.get("errors"):
        problems.append("an error body must hold a non-empty 'errors' list")
    if problems:
        raise ContractError("error body outside the spec:\n  " + "\n  ".join(problems))


def validate_exchange(exchange: RecordedExchange, *, check_request: bool = True) -> None:
    """Validate the request (unless ``check_request=False``) and the response against the spec.

    Pass ``check_request=False`` for requests made wrong on purpose (bad JSON,
    missing auth, out-of-range page) whose *answer* must still be in the spec.
    A dropped connection (``status is None``) has only its request validated.
    """
    request = _mock_request(exchange)
    spec = openapi(spec_path(exchange.path))
    if check_request:
        try:
            spec.validate_request(request)
        except Exception as exc:  # openapi-core raises many types; all mean "not in the spec"
            raise ContractError(f"request outside the spec: {_describe(exchange)}\n{_explain(exc)}") from None
    if exchange.status is None:
        return
    content_type = exchange.header("Content-Type") or ""
    if exchange.status >= 500:
        try:
            body = json.loads(exchange.response_body)
        except ValueError:
            raise ContractError(f"5xx body is not JSON: {_describe(exchange)}") from None
        try:
            validate_error_body(body)
        except ContractError as exc:
            raise ContractError(f"{exc}\n{_describe(exchange)}") from None
        return
    response = MockResponse(
        exchange.response_body,
        status_code=exchange.status,
        headers=dict(exchange.response_headers),
        content_type=content_type,
    )
    try:
        spec.validate_response(request, response)
    except Exception as exc:
        raise ContractError(f"response outside the spec: {_describe(exchange)}\n{_explain(exc)}") from None
    if exchange.status >= 400:
        validate_error_body(json.loads(exchange.response_body))
