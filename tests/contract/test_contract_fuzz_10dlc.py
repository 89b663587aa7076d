"""Property-based run of the 10DLC operations of short-codes-10dlc.openapi.yml against a live
sandbox (schemathesis, bounded): no 5xx, every status, content type and body within the spec,
auth enforced. Half the cases name numbers and campaigns that exist, so success answers and
the refusals of real preconditions are checked too."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from bulkops.sandbox import Sandbox, SandboxConfig, sandbox_in_thread
from bulkops.sandbox.seed import generate
from bulkops.sandbox.tendlc import campaigns_for
from tests.contract.spec_10dlc import SPEC_PATH
from tests.contract.test_contract_fuzz import CHECKS

LIVE_CONFIG = SandboxConfig(numbers=300, profiles=6, seed=7, assign_delay=0.0, assign_fail_rate=0.2)
_SEED = generate(LIVE_CONFIG)
NUMBERS = _SEED.numbers[:60]
PROFILES = [p.id for p in _SEED.profiles]


CAMPAIGNS = [c.campaign_id for c in campaigns_for(LIVE_CONFIG.seed)]
schema = schemathesis.openapi.from_path(SPEC_PATH).include(path_regex="^/10dlc")


def _pick(value: object) -> int:
    return zlib.crc32(repr(value).encode())


@schema.hook
def map_path_parameters(context: schemathesis.HookContext,
                        path_parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    if not path_parameters:
        return path_parameters
    pick = _pick(sorted(path_parameters.items()))
    if pick % 2:
        return path_parameters
    if "phoneNumber" in path_parameters:
        number = NUMBERS[pick % len(NUMBERS)]
        path_parameters["phoneNumber"] = number if pick % 4 else number.replace("+", "%2B")
    if "campaignId" in path_parameters:
        path_parameters["campaignId"] = CAMPAIGNS[pick % len(CAMPAIGNS)]
    return path_parameters


@schema.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    pick = _pick(sorted(body.items(), key=str))
    if pick % 2:
        return body
    if "phoneNumber" in body:
        body["phoneNumber"] = NUMBERS[pick % len(NUMBERS)]
    if "campaignId" in body:
        body["campaignId"] = CAMPAIGNS[pick % len(CAMPAIGNS)]
    if "messagingProfileId" in body:
        body["messagingProfileId"] = PROFILES[pick % len(PROFILES)]
    return body


@pytest.fixture(scope="module")
def live_sandbox() -> Iterator[Sandbox]:
    with sandbox_in_thread(LIVE_CONFIG) as running:
        assert list(running.tendlc.campaigns) == CAMPAIGNS
        yield running


@schema.parametrize()
@settings(max_examples=20, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_10dlc_sandbox_answers_within_the_spec(case: schemathesis.Case[Any], live_sandbox: Sandbox) -> None:
    case.call_and_validate(
        base_url=live_sandbox.base_url,
        headers={"Authorization": f"Bearer {live_sandbox.api_key}"},
        checks=CHECKS,
        timeout=10,
    )
