"""Bulk-order faults of the sandbox: both path spellings, failed and stuck orders, rate limits,
and an order that overwrites a PATCH made while it was pending."""

from __future__ import annotations

import argparse

from bulkops.sandbox.cli import add_arguments, config_from_args
from tests.conftest import SandboxFactory
from tests.sandbox.sandbox_http import Api, enc, wait_for_order


async def test_both_path_spellings_reach_the_same_orders(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=50, bulk_speed=5000) as sandbox, Api.open(sandbox) as api:
        target = sandbox.profile_ids()[1]
        numbers = sandbox.numbers()[:5]
        reply = await api.post("/messaging_numbers/bulk_updates",
                               json={"messaging_profile_id": target, "numbers": numbers, "assign_only": True})
        assert reply.status == 200
        order_id = reply.data["order_id"]
        result = await wait_for_order(api, order_id)
        assert result["success"] == numbers
        other = (await api.get(f"/messaging_numbers/bulk_updates/{order_id}")).data
        assert other["order_id"] == order_id and other["success"] == numbers
        assert all(sandbox.profile_of(n) == target for n in numbers)


async def test_order_fail_rate_lists_numbers_failed_without_applying_them(
    sandbox_factory: SandboxFactory,
) -> None:
    async with sandbox_factory(numbers=200, bulk_speed=5000, order_fail_rate=0.3) as sandbox, \
            Api.open(sandbox) as api:
        target = sandbox.profile_ids()[0]
        numbers = [n for n, p in sandbox.dump().items() if p != target][:100]
        reply = await api.post("/messaging_numbers_bulk_updates",
                               json={"messaging_profile_id": target, "numbers": numbers})
        result = await wait_for_order(api, reply.data["order_id"])
        assert 10 < len(result["failed"]) < 60
        assert sorted(result["success"] + result["failed"]) == sorted(numbers)
        assert all(sandbox.profile_of(n) != target for n in result["failed"])
        assert all(sandbox.profile_of(n) == target for n in result["success"])
        # A PATCH of a failed number applies (the order gave no reason; a PATCH would).
        failed = result["failed"][0]
        patched = await api.patch(f"/phone_numbers/{enc(failed)}/messaging",
                                  json={"messaging_profile_id": target})
        assert patched.status == 200 and sandbox.profile_of(failed) == target


async def test_order_stuck_rate_keeps_every_number_pending(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=50, bulk_speed=5000, order_stuck_rate=1.0) as sandbox, \
            Api.open(sandbox) as api:
        target = sandbox.profile_ids()[0]
        numbers = [n for n, p in sandbox.dump().items() if p != target][:10]
        order_id = (await api.post("/messaging_numbers_bulk_updates",
                                   json={"messaging_profile_id": target, "numbers": numbers})).data["order_id"]
        for _ in range(3):  # polls see no progress, ever
            data = (await api.get(f"/messaging_numbers_bulk_updates/{order_id}")).data
            assert data["pending"] == numbers and data["success"] == [] and data["failed"] == []
        assert all(sandbox.profile_of(n) != target for n in numbers)


async def test_order_overwrites_a_patch_made_while_it_was_pending(sandbox_factory: SandboxFactory) -> None:
    # bulk_speed 20/s: the order reaches its 10th number about 0.5 s after the PATCH below.
    async with sandbox_factory(numbers=50, bulk_speed=20) as sandbox, Api.open(sandbox) as api:
        target, other = sandbox.profile_ids()[0], sandbox.profile_ids()[1]
        numbers = [n for n, p in sandbox.dump().items() if p not in (target, other)][:10]
        order_id = (await api.post("/messaging_numbers_bulk_updates",
                                   json={"messaging_profile_id": target, "numbers": numbers})).data["order_id"]
        last = numbers[-1]
        patched = await api.patch(f"/phone_numbers/{enc(last)}/messaging", json={"messaging_profile_id": other})
        assert patched.status == 200 and sandbox.profile_of(last) == other
        result = await wait_for_order(api, order_id)
        assert last in result["success"]
        assert sandbox.profile_of(last) == target  # the PATCH was overwritten


async def test_orders_are_rate_limited_like_any_request(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=50, rate=2, window=60) as sandbox, Api.open(sandbox) as api:
        body = {"messaging_profile_id": sandbox.profile_ids()[0], "numbers": sandbox.numbers()[:2]}
        statuses = [(await api.post("/messaging_numbers_bulk_updates", json=body)).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = await api.get("/messaging_numbers_bulk_updates/00000000-0000-4000-8000-000000000000")
        assert limited.status == 429


def test_order_fault_flags_reach_the_config() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(
        ["--order-fail-rate", "0.01", "--order-stuck-rate", "0.3", "--bulk-speed", "250"]))
    assert (config.order_fail_rate, config.order_stuck_rate, config.bulk_speed) == (0.01, 0.3, 250.0)
