"""TelnyxClient against a scriptable aiohttp.web server on loopback: real HTTP, real limiter.

Waits the client would make (backoff, 429 holds) go through a clock that records and skips
them, so the tests take no longer than their round trips.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import ssl
import subprocess
import traceback
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bulkops import __version__
from bulkops.telnyx.client import TelnyxClient
from bulkops.errors import ApiError, ApiUnreachable, AuthError, ConfigError, ExitCode
from bulkops.models import ApiErrorInfo, NumberState, Profile
from bulkops.telnyx.clock import SystemClock
from bulkops.telnyx.ratelimit import RateLimiter
from bulkops.telnyx.retry import GaveUp, Outcome, RetryPolicy

from tests.client_kit import (
    FAST, KEY, NUMBER, PROFILE, FakeTelnyx, Respond, drop, echo_key, hang, make_client, meta, number,
    reply, server, telnyx_error, text,
)


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "api_key", "insecure", "complaint"),
    [
        ("https://api.telnyx.com/v2", "", False, "TELNYX_API_KEY"),
        ("https://api.telnyx.com/v2", "   ", False, "TELNYX_API_KEY"),
        ("https://api.telnyx.com/v2", "abc\ndef", False, "control characters"),
        ("ftp://api.telnyx.com/v2", KEY, False, "not an http(s) URL"),
        ("api.telnyx.com", KEY, False, "not an http(s) URL"),
        ("http://api.example.com/v2", KEY, False, "clear text"),
        ("http://10.0.0.8:8787/v2", KEY, False, "clear text"),
        (f"https://user:{KEY}@api.telnyx.com/v2", KEY, False, "no credentials"),
    ],
)
def test_unsafe_or_missing_configuration_is_refused(
    base_url: str, api_key: str, insecure: bool, complaint: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        TelnyxClient(base_url, api_key, limiter=RateLimiter(), policy=FAST, insecure=insecure)
    assert complaint in str(caught.value)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)


@pytest.mark.parametrize(
    ("base_url", "insecure"),
    [
        ("https://api.telnyx.com/v2", False),
        ("http://127.0.0.1:8787/v2", False),
        ("http://127.3.2.1:8787/v2/", False),
        ("http://[::1]:8787/v2", False),
        ("http://localhost:8787/v2", False),
        ("http://api.example.com/v2", True),
    ],
)
def test_https_loopback_http_and_insecure_http_are_accepted(base_url: str, insecure: bool) -> None:
    client = TelnyxClient(base_url, KEY, limiter=RateLimiter(), policy=FAST, insecure=insecure)
    assert KEY not in repr(client)


# --- requests on the wire -------------------------------------------------------------------


async def test_patch_sends_the_number_percent_encoded_with_json_and_headers(server: FakeTelnyx) -> None:
    client, limiter, _ = make_client(server.base_url)
    async with client:
        outcome = await client.update_profile(NUMBER, PROFILE)
    assert outcome == Outcome(NumberState(NUMBER, PROFILE, "1293384261075731499"), 1)
    [seen] = server.seen
    assert (seen.method, seen.raw_path) == ("PATCH", "/v2/phone_numbers/%2B13125550001/messaging")
    assert json.loads(seen.body) == {"messaging_profile_id": PROFILE}
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"].startswith(f"bulkops/{__version__}")
    assert limiter.stats.sent == 1 and limiter.stats.in_flight == 0


@pytest.mark.parametrize("unassigned", [None, ""], ids=["null", "empty"])
async def test_unassign_sends_an_empty_string_and_reads_null_or_empty_as_none(
    server: FakeTelnyx, unassigned: str | None
) -> None:
    server.then(reply(200, {"data": number(NUMBER, unassigned)}))
    client, _, _ = make_client(server.base_url)
    async with client:
        outcome = await client.update_profile(NUMBER, "")
    assert server.seen[0].body == b'{"messaging_profile_id": ""}'
    assert outcome.value.profile_id is None


async def test_update_profile_refuses_none_which_telnyx_would_silently_ignore(server: FakeTelnyx) -> None:
    client, _, _ = make_client(server.base_url)
    async with client:
        with pytest.raises(TypeError, match="never None"):
            await client.update_profile(NUMBER, None)  # type: ignore[arg-type]
    assert server.seen == []


async def test_get_numbers_sends_plus_as_2b_and_follows_every_page(server: FakeTelnyx) -> None:
    wanted = ["+13125550001", "+13125550002", "+13125550003", "+19999999999"]
    server.then(
        reply(200, {"data": [number(wanted[0], PROFILE), number(wanted[1], "")], "meta": meta(1, 2)}),
        reply(200, {"data": [number(wanted[2], None), number("+15550000000", PROFILE)], "meta": meta(2, 2)}),
    )
    client, _, _ = make_client(server.base_url)
    async with client:
        outcome = await client.get_numbers(wanted)
    assert outcome.attempts == 2
    assert outcome.value == {
        wanted[0]: NumberState(wanted[0], PROFILE, "1293384261075731499"),
        wanted[1]: NumberState(wanted[1], None, "1293384261075731499"),
        wanted[2]: NumberState(wanted[2], None, "1293384261075731499"),
    }  # the unknown number is absent; a number nobody asked about is ignored
    first, second = server.seen
    assert first.raw_path == "/v2/phone_numbers/messaging"
    assert "%2B13125550001,%2B13125550002" in first.raw_query
    assert first.query["filter[phone_number]"] == ",".join(wanted)
    assert (first.query["page[size]"], first.query["page[number]"]) == ("250", "1")
    assert second.query["page[number]"] == "2"


async def test_get_numbers_asks_at_most_250_numbers_per_request(server: FakeTelnyx) -> None:
    wanted = [f"+1312555{n:04d}" for n in range(600)]
    client, _, _ = make_client(server.base_url)
    async with client:
        outcome = await client.get_numbers(wanted + wanted[:10])
        nothing = await client.get_numbers([])
    assert [len(s.query["filter[phone_number]"].split(",")) for s in server.seen] == [250, 250, 100]
    assert outcome == Outcome({}, 3)
    assert nothing == Outcome({}, 0)


async def test_list_profile_numbers_reads_every_page_before_returning(server: FakeTelnyx) -> None:
    pages = [[f"+1312555{p}{n:03d}" for n in range(3)] for p in range(3)]
    for i, page in enumerate(pages):
        server.then(reply(200, {"data": [number(x, PROFILE) for x in page], "meta": meta(i + 1, 3)}))
    client, _, _ = make_client(server.base_url)
    async with client:
        numbers = await client.list_profile_numbers(PROFILE)
    assert numbers == [x for page in pages for x in page]
    assert [s.raw_path for s in server.seen] == [f"/v2/messaging_profiles/{PROFILE}/phone_numbers"] * 3
    assert [s.query["page[number]"] for s in server.seen] == ["1", "2", "3"]
    assert {s.query["page[size]"] for s in server.seen} == {"250"}


async def test_get_profile_answers_none_for_404_and_the_profile_otherwise(server: FakeTelnyx) -> None:
    server.then(
        telnyx_error(404, "10005", "Resource not found", "No such profile."),
        reply(200, {"data": {"id": PROFILE, "name": "Support line", "record_type": "messaging_profile"}}),
    )
    client, _, _ = make_client(server.base_url)
    async with client:
        assert await client.get_profile(PROFILE) is None
        assert await client.get_profile(PROFILE) == Profile(PROFILE, "Support line")
    assert server.seen[0].raw_path == f"/v2/messaging_profiles/{PROFILE}"


# --- status mapping and retries --------------------------------------------------------------


async def test_a_permanent_422_fails_the_row_with_telnyx_fields_verbatim(server: FakeTelnyx) -> None:
    server.then(telnyx_error(422, "10015", "Invalid value", "messaging_profile_id is not a valid UUID"))
    client, _, _ = make_client(server.base_url)
    async with client:
        with pytest.raises(GaveUp) as caught:
            await client.update_profile(NUMBER, "not-a-uuid")
    expected = ApiErrorInfo(422, "10015", "Invalid value", "messaging_profile_id is not a valid UUID")
    assert caught.value.info == expected
    assert caught.value.attempts == 1 and not caught.value.retryable
    assert len(server.seen) == 1


@pytest.mark.parametrize("status", [400, 404, 409, 422])
async def test_other_4xx_are_permanent_and_not_retried(server: FakeTelnyx, status: int) -> None:
    server.then(telnyx_error(status, "10015", "Bad", "no"))
    client, _, _ = make_client(server.base_url)
    async with client:
        with pytest.raises(GaveUp) as caught:
            await client.update_profile(NUMBER, PROFILE)
    assert (caught.value.info.status, caught.value.retryable, len(server.seen)) == (status, False, 1)


@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_raise_auth_error_at_once(server: FakeTelnyx, status: int) -> None:
    server.then(telnyx_error(status, "10009", "Authentication failed", "The API key is invalid."))
    client, _, _ = make_client(server.base_url)
    async with client:
        with pytest.raises(AuthError) as caught:
            await client.update_profile(NUMBER, PROFILE)
    error = caught.value
    assert (error.status, error.code, error.title) == (status, "10009", "Authentication failed")
    assert "TELNYX_API_KEY" in str(error) and "refused" in str(error)
    assert len(server.seen) == 1


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
async def test_408_and_5xx_are_retried_then_succeed(server: FakeTelnyx, status: int) -> None:
    server.then(telnyx_error(status, "10007", "Unexpected error", "try again"), text(status, "<h1>oops</h1>"))
    client, limiter, clock = make_client(server.base_url)
    async with client:
        outcome = await client.update_profile(NUMBER, PROFILE)
        stats = client.stats
    assert outcome.attempts == 3 and outcome.value.profile_id == PROFILE
    assert stats.retries == 2 and stats.responses == {status: 2, 200: 1}
    assert len(clock.sleeps) == 2 and all(0 <= s <= FAST.backoff_max for s in clock.sleeps)


async def test_5xx_exhausting_the_attempts_gives_up_as_retryable(server: FakeTelnyx) -> None:
    server.then(*[telnyx_error(503, "10007", "Unavailable", "busy")] * 3)
    client, _, _ = make_client(server.base_url)
    async with client:
        with pytest.raises(GaveUp) as caught:
            await client.update_profile(NUMBER, PROFILE)
    assert caught.value.attempts == 3 and caught.value.retryable
    assert caught.value.info == ApiErrorInfo(503, "10007", "Unavailable", "busy")


@pytest.mark.parametrize(
    "headers",
    [{"Retry-After": "30"}, {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "30"}],
    ids=["retry-after", "x-ratelimit-reset"],
)
async def test_a_429_holds_the_limiter_then_the_call_succeeds(
    server: FakeTelnyx, headers: dict[str, str]
) -> None:
    server.then(telnyx_error(429, "10011", "Too many requests", "slow down", headers))
    client, limiter, clock = make_client(server.base_url)
    async with client:
        outcome = await client.update_profile(NUMBER, PROFILE)
        stats = client.stats
    assert outcome.attempts == 2
    assert limiter.stats.holds == 1 and limiter.stats.held_seconds == pytest.approx(30.0)
    assert sum(clock.sleeps) >= 29.0  # the retry waited out the hold (skipped by the test clock)
    assert (stats.rate_limited, stats.retries, stats.holds) == (1, 1, 1)


async def test_a_real_429_hold_delays_the_next_request(server: FakeTelnyx) -> None:
    server.then(telnyx_error(429, "10011", "Too many requests", "slow down", {"Retry-After": "0.2"}))
    client, _, _ = make_client(server.base_url, clock=SystemClock())
    async with client:
        outcome = await client.update_profile(NUMBER, PROFILE)
    assert outcome.attempts == 2
    assert server.seen[1].at - server.seen[0].at >= 0.2  # a bound the hold guarantees, not a tolerance


async def test_a_timeout_is_transient_and_retried(server: FakeTelnyx) -> None:
    server.then(hang(server))
    client, _, _ = make_client(server.base_url, timeout=0.3)
    async with client:
        outcome = await client.update_profile(NUMBER, PROFILE)
        stats = client.stats
    assert outcome.attempts == 2
    assert stats.transport_errors == 1 and stats.retries == 1


async def test_timeouts_exhausting_the_attempts_give_up_with_no_status(server: FakeTelnyx) -> None:
    server.then(hang(server), hang(server))
    policy = RetryPolicy(max_attempts=2, backoff_base=0.0)
    client, _, _ = make_client(server.base_url, policy=policy, timeout=0.2)
    async with client:
        with pytest.raises(GaveUp) as caught:
            await client.update_profile(NUMBER, PROFILE)
    assert caught.value.info.status is None
    assert caught.value.info.detail == "PATCH /phone_numbers/%2B13125550001/messaging: no answer within 0.2 s"


async def test_a_dropped_connection_is_transient_and_retried(server: FakeTelnyx) -> None:
    server.then(drop)
    client, limiter, _ = make_client(server.base_url)
    async with client:
        outcome = await client.update_profile(NUMBER, PROFILE)
        stats = client.stats
    assert outcome.attempts == 2 and stats.transport_errors == 1
    assert limiter.stats.sent == 2 and limiter.stats.in_flight == 0


async def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = RetryPolicy(max_attempts=2, backoff_base=0)
    client, limiter, _ = make_client(f"http://127.0.0.1:{port}/v2", policy=policy)
    async with client:
        with pytest.raises(GaveUp) as caught:
            await client.get_profile(PROFILE)
    assert caught.value.retryable and caught.value.attempts == 2
    assert "could not connect" in str(caught.value)
    assert KEY not in _everything_said(caught.value)
    assert limiter.stats.in_flight == 0


async def test_an_unverifiable_certificate_is_unreachable_exit_7_and_not_retried(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    try:
        client, limiter, _ = make_client(f"https://localhost:{runner.addresses[0][1]}/v2")
        async with client:
            with pytest.raises(ApiUnreachable) as caught:
                await client.get_profile(PROFILE)
    finally:
        await runner.cleanup()
    assert caught.value.exit_code == ExitCode.UNREACHABLE  # not 4: the key was never judged
    assert "certificate" in str(caught.value) and "TELNYX_API_BASE_URL" in str(caught.value)
    assert KEY not in _everything_said(caught.value)
    assert seen == [] and limiter.stats.sent == 1 and limiter.stats.in_flight == 0


async def test_a_tls_handshake_failure_is_unreachable_exit_7_and_not_retried() -> None:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # plain http: an https client's hello fails
    await site.start()
    try:
        client, limiter, _ = make_client(f"https://127.0.0.1:{runner.addresses[0][1]}/v2")
        async with client:
            with pytest.raises(ApiUnreachable) as caught:
                await client.get_profile(PROFILE)
    finally:
        await runner.cleanup()
    assert caught.value.exit_code == ExitCode.UNREACHABLE
    assert "TLS handshake" in str(caught.value) and "TELNYX_API_BASE_URL" in str(caught.value)
    assert "refused the API key" not in str(caught.value)
    assert KEY not in _everything_said(caught.value)
    assert seen == [] and limiter.stats.sent == 1 and limiter.stats.in_flight == 0


@pytest.mark.parametrize(
    ("respond", "retryable", "why"),
    [
        (text(502, "<html>Bad gateway</html>"), True, "not JSON (text/html"),
        (text(400, "nope", "text/plain"), False, "not JSON (text/plain"),
        (text(200, "{truncated", "application/json"), False, "not JSON (application/json"),
        (reply(200, {"data": []}), False, "a number is not a JSON object"),
        (reply(200, {"data": {"phone_number": NUMBER, "messaging_profile_id": 7}}), False, "not a string or null"),
        (reply(200, [1, 2]), False, "no `data` member"),
        (reply(302, None, {"Location": "https://elsewhere.example/v2"}), False, "redirect"),
    ],
)
async def test_unusable_answers_fail_clearly_instead_of_crashing(
    server: FakeTelnyx, respond: Respond, retryable: bool, why: str
) -> None:
    server.then(*[respond] * 3)
    client, _, _ = make_client(server.base_url)
    async with client:
        with pytest.raises(GaveUp) as caught:
            await client.update_profile(NUMBER, PROFILE)
    assert caught.value.retryable is retryable
    assert why in (caught.value.info.detail or "")
    assert len(server.seen) == (3 if retryable else 1)


async def test_every_attempt_goes_through_the_shared_limiter(server: FakeTelnyx) -> None:
    server.then(telnyx_error(500, "10007", "x", "y"), drop)
    client, limiter, _ = make_client(server.base_url)
    async with client:
        await client.update_profile(NUMBER, PROFILE)
        await asyncio.gather(*(client.update_profile(NUMBER, PROFILE) for _ in range(5)))
    assert limiter.stats.sent == len(server.seen) == 8
    assert limiter.stats.in_flight == 0


async def test_concurrent_calls_share_the_connection_pool_and_limiter(server: FakeTelnyx) -> None:
    client, limiter, _ = make_client(server.base_url, clock=SystemClock())
    async with client:
        outcomes = await asyncio.gather(*(client.update_profile(NUMBER, PROFILE) for _ in range(20)))
    assert all(o.value.profile_id == PROFILE for o in outcomes)
    assert limiter.stats.sent == 20 and limiter.stats.in_flight == 0


# --- secrets --------------------------------------------------------------------------------


def _everything_said(error: BaseException) -> str:
    """str, repr, args and the whole chained traceback of an exception."""
    said = [str(error), repr(error), repr(error.args), *traceback.format_exception(error)]
    for attr in ("info", "message", "detail", "title", "code"):
        said.append(repr(getattr(error, attr, None)))
    return "\n".join(said)


@pytest.mark.parametrize(
    ("kind", "responses", "expected"),
    [
        ("401 echoing the key", [echo_key(401)], AuthError),
        ("403", [telnyx_error(403, "10010", "Forbidden", "no")], AuthError),
        ("422 echoing the key", [echo_key(422)], GaveUp),
        ("5xx exhausted", [echo_key(503)] * 3, GaveUp),
        ("429 exhausted", [echo_key(429)] * 3, GaveUp),
        ("drop", [drop] * 3, GaveUp),
        ("timeout", ["hang"] * 3, GaveUp),
        ("non-JSON", [text(200, "oops")], GaveUp),
    ],
)
async def test_the_api_key_appears_in_no_error_and_no_log(
    server: FakeTelnyx,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    responses: list[Any],
    expected: type[BaseException],
) -> None:
    caplog.set_level(logging.DEBUG)
    server.then(*[hang(server) if r == "hang" else r for r in responses])
    policy = RetryPolicy(max_attempts=3, max_rate_limited=3, backoff_base=0.0)
    client, _, _ = make_client(server.base_url, policy=policy, timeout=0.2)
    async with client:
        with pytest.raises(expected) as caught:
            await client.update_profile(NUMBER, PROFILE)
    assert KEY not in _everything_said(caught.value)
    assert KEY not in caplog.text
    if kind.endswith("echoing the key"):
        assert "[redacted]" in _everything_said(caught.value)
