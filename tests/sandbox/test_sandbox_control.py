"""Control routes, the threaded and child-process sandboxes, and the CLI flags."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bulkops.errors import ConfigError
from bulkops.sandbox import SandboxConfig, running_sandbox, sandbox_in_thread
from bulkops.sandbox.cli import add_arguments, config_from_args
from bulkops.sandbox.process import spawn_sandbox
from tests.conftest import SandboxFactory
from tests.sandbox.sandbox_http import Api, enc


async def test_control_routes_are_404_without_control(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=20) as sandbox, Api.open(sandbox) as api:
        for path in ("/_control/stats", "/_control/dump"):
            reply = await api.get(path, origin=True, auth=False)
            assert reply.status == 404
            assert reply.error["code"] == "10005"
        assert (await api.post("/_control/faults", origin=True, json={"error_rate": 1})).status == 404


async def test_control_stats_dump_and_reset(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=20, control=True) as sandbox, Api.open(sandbox) as api:
        number = next(n for n, p in sandbox.dump().items() if p is None)
        await api.patch(f"/phone_numbers/{enc(number)}/messaging", json={"messaging_profile_id": sandbox.profile_ids()[0]})
        stats = (await api.get("/_control/stats", origin=True, auth=False)).body
        assert stats["writes_applied"] == 1
        assert stats["writes_by_number"] == {number: 1}
        assert stats["requests"] == {"PATCH /v2/phone_numbers/{id}/messaging": {"200": 1}}  # control calls not counted
        dump = (await api.get("/_control/dump", origin=True, auth=False)).body
        assert dump == sandbox.dump()
        assert (await api.post("/_control/reset-stats", origin=True, json={})).body["writes_applied"] == 0
        assert sandbox.stats.writes_applied == 0


async def test_control_changes_faults_rate_profile_and_ignore_writes(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=20, control=True) as sandbox, Api.open(sandbox) as api:
        faults = await api.post("/_control/faults", origin=True, auth=False, json={"error_rate": 1.0})
        assert faults.body["error_rate"] == 1.0
        assert (await api.get("/messaging_profiles")).status >= 500
        await api.post("/_control/faults", origin=True, auth=False, json={"error_rate": 0})
        rate = await api.post("/_control/rate", origin=True, auth=False, json={"rate": 1, "window": 60})
        assert rate.body == {"rate": 1, "window": 60.0, "limiter": "fixed"}
        assert (await api.get("/messaging_profiles")).status == 200
        assert (await api.get("/messaging_profiles")).status == 429
        number = sandbox.numbers()[0]
        target = sandbox.profile_ids()[1]
        moved = await api.post(
            "/_control/profile", origin=True, auth=False, json={"phone_number": number, "messaging_profile_id": target}
        )
        assert moved.body == {"phone_number": number, "messaging_profile_id": target}
        assert sandbox.profile_of(number) == target
        await api.post("/_control/ignore-writes", origin=True, auth=False, json={"on": True})
        assert sandbox.config.ignore_writes is True
        config = (await api.get("/_control/config", origin=True, auth=False)).body
        assert config["rate"] == 1 and "api_key" not in config


async def test_control_rejects_bad_settings_with_400(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=20, control=True) as sandbox, Api.open(sandbox) as api:
        for path, body in (
            ("/_control/faults", {"error_rate": 2}),
            ("/_control/faults", {"nonsense": 1}),
            ("/_control/rate", {"rate": "many"}),
            ("/_control/ignore-writes", {"on": "yes"}),
        ):
            reply = await api.post(path, origin=True, auth=False, json=body)
            assert reply.status == 400, (path, body)
            assert reply.error["code"] == "10015"
        unknown = await api.post(
            "/_control/profile", origin=True, auth=False, json={"phone_number": "+19999999999", "messaging_profile_id": ""}
        )
        assert unknown.status == 404
        assert sandbox.config.faults.error_rate == 0


async def test_a_busy_port_is_a_config_error(sandbox_factory: SandboxFactory) -> None:
    async with sandbox_factory(numbers=5) as sandbox:
        port = int(sandbox.base_url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(ConfigError, match="cannot listen"):
            async with running_sandbox(SandboxConfig(numbers=5, port=port)):
                pass


def test_sandbox_in_a_thread_serves_synchronous_clients() -> None:
    with sandbox_in_thread(SandboxConfig(numbers=30, control=True)) as sandbox:
        request = urllib.request.Request(
            f"{sandbox.base_url}/messaging_profiles", headers={"Authorization": f"Bearer {sandbox.api_key}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert len(json.load(response)["data"]) == 5
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{sandbox.base_url}/messaging_profiles", timeout=10)
        assert info.value.code == 401
        info.value.close()
    assert sandbox.stats.count("GET /v2/messaging_profiles") == 2


def test_sandbox_process_announces_its_url_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    with spawn_sandbox(["--numbers", "50", "--control", "--seed", "3"], workdir=tmp_path) as child:
        assert child.base_url.startswith("http://127.0.0.1:") and child.base_url.endswith("/v2")
        with urllib.request.urlopen(f"{child.origin}/_control/stats", timeout=10) as response:
            assert json.load(response)["total_requests"] == 0
        request = urllib.request.Request(
            f"{child.base_url}/phone_numbers/messaging?page[size]=1", headers={"Authorization": "Bearer sandbox-key"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["meta"]["total_results"] == 50
        assert child.stop() == 0
    output = child.log_path.read_text()
    assert f"base URL: {child.base_url}" in output
    assert "export TELNYX_API_KEY=sandbox-key" in output
    assert f"export TELNYX_API_BASE_URL={child.base_url}" in output
    assert "10DLC campaigns that take numbers: " in output


def test_sandbox_process_that_cannot_start_reports_its_output(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="error_rate"):
        spawn_sandbox(["--error-rate", "3"], workdir=tmp_path, ready_timeout=30)


def test_cli_flags_map_onto_the_config() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = config_from_args(parser.parse_args([]))
    assert (defaults.port, defaults.numbers, defaults.profiles, defaults.api_key) == (8787, 1000, 5, "sandbox-key")
    args = parser.parse_args(
        ["--port", "0", "--rate", "10", "--window", "2", "--retry-after", "http-date", "--error-rate", "0.1",
         "--drop-rate", "0.2", "--slow-ms", "500", "--bulk-max", "50", "--ignore-writes", "--control",
         "--api-key", "k1", "--seed", "4"]
    )  # fmt: skip
    config = config_from_args(args)
    assert (config.rate, config.window, config.retry_after) == (10, 2.0, "http-date")
    assert (config.faults.error_rate, config.faults.drop_rate, config.faults.slow_ms) == (0.1, 0.2, 500.0)
    assert config.faults.seed == 4 and config.seed == 4
    assert config.bulk_max == 50 and config.ignore_writes and config.control and config.api_key == "k1"
