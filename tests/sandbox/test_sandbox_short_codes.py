"""The sandbox's short codes: seeded per profile (some unbound), both listings with the
profile filter, GET and PATCH by UUID, under the same auth as every route."""

from __future__ import annotations

import argparse

from bulkops.sandbox import SandboxConfig, running_sandbox
from bulkops.sandbox.cli import add_arguments, config_from_args
from tests.sandbox.sandbox_http import Api


def test_short_codes_flag_sets_how_many_are_seeded_and_the_library_default_seeds_none() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args([])).short_codes == 12
    assert config_from_args(parser.parse_args(["--short-codes", "3"])).short_codes == 3
    assert SandboxConfig().short_codes == 0


async def test_seeded_short_codes_spread_over_the_profiles_with_some_unbound() -> None:
    async with running_sandbox(SandboxConfig(numbers=10, profiles=3, short_codes=12)) as sandbox:
        codes = sandbox.short_codes()
        assert len(codes) == 12 and all(c.isdigit() and len(c) in (5, 6) for c in codes)
        assert sum(p is None for p in codes.values()) == 2
        assert {p for p in codes.values() if p} == set(sandbox.profile_ids())


async def test_the_filter_takes_a_profile_or_null_and_both_listings_agree() -> None:
    async with running_sandbox(SandboxConfig(numbers=10, profiles=2, short_codes=7)) as sandbox:
        profile = sandbox.profile_ids()[0]
        async with Api.open(sandbox) as api:
            by_filter = await api.get(f"/short_codes?filter[messaging_profile_id]={profile}")
            by_path = await api.get(f"/messaging_profiles/{profile}/short_codes")
            unbound = await api.get("/short_codes?filter[messaging_profile_id]=null")
            bad = await api.get("/short_codes?filter[messaging_profile_id]=nope")
        assert by_filter.data == by_path.data
        assert {c["short_code"] for c in by_path.data} == {
            c for c, p in sandbox.short_codes().items() if p == profile}
        assert {c["short_code"] for c in unbound.data} == {
            c for c, p in sandbox.short_codes().items() if p is None}
        assert bad.status == 400


async def test_patch_binds_and_unbinds_by_uuid_and_requires_the_profile_field() -> None:
    async with running_sandbox(SandboxConfig(numbers=10, profiles=2, short_codes=4)) as sandbox:
        code = next(iter(sandbox.short_codes()))
        code_id, target = sandbox.short_code_id(code), sandbox.profile_ids()[1]
        async with Api.open(sandbox) as api:
            bound = await api.patch(f"/short_codes/{code_id}", json={"messaging_profile_id": target})
            assert bound.status == 200 and sandbox.short_codes()[code] == target
            missing = await api.patch(f"/short_codes/{code_id}", json={"tags": ["a"]})
            assert missing.status == 422 and sandbox.short_codes()[code] == target
            unbound = await api.patch(f"/short_codes/{code_id}", json={"messaging_profile_id": ""})
            assert unbound.status == 200 and unbound.data["messaging_profile_id"] is None
            by_digits = await api.get(f"/short_codes/{code}")
            assert by_digits.status == 404 and "takes its id, a UUID" in by_digits.text
            no_key = await api.get(f"/short_codes/{code_id}", auth=False)
            assert no_key.status == 401
        assert sandbox.short_codes()[code] is None
        assert sandbox.stats.writes_by_number[code] == 2  # the refused PATCH wrote nothing
