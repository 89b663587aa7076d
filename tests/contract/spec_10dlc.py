"""Validate recorded exchanges of the 10DLC routes against ``short-codes-10dlc.openapi.yml``.

The same checks as ``spec.py`` (which holds ``messaging-numbers.openapi.yml``), over the
repository's copy of the short-code and 10DLC contract. 10DLC errors have the loose
``10dlc_Errors`` shape; an injected 5xx is checked against it.

    from tests.contract.spec_10dlc import validate_exchange
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from openapi_core import OpenAPI
from openapi_core.testing import MockResponse
from openapi_schema_validator import OAS31Validator

from bulkops.sandbox import RecordedExchange
from tests.contract.spec import ContractError, _describe, _explain, _mock_request

SPEC_NAME = "short-codes-10dlc.openapi.yml"
SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "telnyx" / SPEC_NAME


@functools.cache
def openapi() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC_PATH))


@functools.cache
def spec_dict() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded


@functools.cache
def _errors_validator() -> OAS31Validator:
    components = spec_dict()["components"]
    return OAS31Validator({"$ref": "#/components/schemas/10dlc_Errors", "components": components})


def validate_error_body(body: object) -> None:
    """Raise ContractError unless ``body`` is a 10DLC error document with at least one error."""
    problems = [f"at {e.json_path}: {e.message}" for e in _errors_validator().iter_errors(body)]
    if not isinstance(body, dict) or not body.get("errors"):
        problems.append("an error body must hold a non-empty 'errors' list")
    if problems:
        raise ContractError("error body outside the spec:\n  " + "\n  ".join(problems))


def validate_exchange(exchange: RecordedExchange, *, check_request: bool = True) -> None:
    """Validate the request (unless ``check_request=False``) and the answer against the spec."""
    request = _mock_request(exchange)
    if check_request:
        try:
            openapi().validate_request(request)
        except Exception as exc:  # openapi-core raises many types; all mean "not in the spec"
            raise ContractError(f"request outside the spec: {_describe(exchange)}\n{_explain(exc)}") from None
    if exchange.status is None:
        return
    if exchange.status >= 500:
        try:
            validate_error_body(json.loads(exchange.response_body))
        except (ValueError, ContractError) as exc:
            raise ContractError(f"5xx body outside the spec ({exc}): {_describe(exchange)}") from None
        return
    response = MockResponse(
        exchange.response_body,
        status_code=exchange.status,
        headers=dict(exchange.response_headers),
        content_type=exchange.header("Content-Type") or "",
    )
    try:
        openapi().validate_response(request, response)
    except Exception as exc:
        raise ContractError(f"response outside the spec: {_describe(exchange)}\n{_explain(exc)}") from None
    if exchange.status >= 400:
        validate_error_body(json.loads(exchange.response_body))
