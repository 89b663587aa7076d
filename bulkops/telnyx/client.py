"""The Telnyx API v2 calls bulkops makes, over one aiohttp session.

Every request goes through the shared ``RateLimiter`` and the ``RetryPolicy``; every answer is
classified by HTTP status (docs/telnyx/API-NOTES.md) into a value, ``Transient``, ``RateLimited``,
``Permanent`` or the fatal ``AuthError``. aiohttp's own exceptions never escape: their
``request_info`` carries our headers, the API key included. Our messages are built from method,
path and status only, and anything the server says is scrubbed of the key.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import anyio
import orjson
from yarl import URL

from bulkops import __version__
from bulkops.errors import ApiError, ApiUnreachable, AuthError, ConfigError
from bulkops.models import AccountNumber, ApiErrorInfo, NumberState, OrderStatus, Profile, ShortCode
from bulkops.redact import redact
from bulkops.telnyx.answers import (
    BadShape, account_page, maybe_number_state, maybe_short_code, numbers_page, order_status, profile, profiles_page, short_code, short_codes_page, total_results, updated_number,
)
from bulkops.telnyx.clock import Clock, SystemClock
from bulkops.telnyx.ratelimit import RateLimiter
from bulkops.telnyx.retry import (
    GaveUp, NotSent, Outcome, Permanent, RateLimited, RetryPolicy, Transient, call_with_retry,
)

T = TypeVar("T")
log = logging.getLogger("bulkops.client")

PAGE_SIZE = 250  # the API's largest page[size]; also the most numbers one filter lists
USER_AGENT = f"bulkops/{__version__} aiohttp/{aiohttp.__version__}"
_JSON_BODY = {"Content-Type": "application/json"}
_BODY_CACHE = 1024  # request bodies kept by profile id


ORDERS_PATH = "/messaging_numbers_bulk_updates"  # the spec's spelling (API-NOTES)


class OrdersUnavailable(Exception):
    """The bulk-order endpoint is missing or refused for this account (404, 405, or a 403 on
    it alone): the job goes on with PATCH. Never a key problem: a 401 stays fatal."""

    def __init__(self, info: ApiErrorInfo) -> None:
        super().__init__(info.describe())
        self.info = info


@dataclass(frozen=True)
class ClientStats:
    requests: int = 0  # HTTP attempts started
    responses: Mapping[int, int] = field(default_factory=dict)  # answers by HTTP status
    retries: int = 0
    rate_limited: int = 0  # 429 answers
    transport_errors: int = 0  # attempts that got no answer (reset, refused, timeout)
    holds: int = 0  # pool-wide 429 holds of the shared limiter
    held_seconds: float = 0.0
    peak_in_flight: int = 0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, for the job summary and benchmarks."""
        data = asdict(self)
        data["responses"] = {str(status): n for status, n in sorted(self.responses.items())}
        data["held_seconds"] = round(self.held_seconds, 3)
        return data


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str  # percent-encoded, below the base URL
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    missing_ok: bool = False  # 404 is an answer (None), not a failure

    @property
    def target(self) -> str:
        """How messages name the request: never headers, never the key."""
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:  # only an error message needs it
        return self.headers.get("Content-Type", "").partition(";")[0].strip()


_CERTIFICATE = "the server's TLS certificate could not be verified"
_HANDSHAKE = "the TLS handshake failed"
_NOT_CONNECTED = "could not connect to the server"


def _segment(value: str) -> str:
    """One path segment, fully percent-encoded: ``+13125550001`` -> ``%2B13125550001``."""
    if value[:1] == "+" and value[1:].isascii() and value[1:].isdigit():  # E.164: once a row
        return "%2B" + value[1:]
    return quote(value, safe="")


def _is_loopback(host: str) -> bool:
    try:
        return host.lower().rstrip(".") == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _base_url(base_url: str, insecure: bool) -> str:
    try:
        url = URL(base_url.strip())
    except (TypeError, ValueError):
        url = URL()
    shown = f"{url.scheme}://{url.host}" if url.host else "the given value"
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"The API base URL ({shown}) is not an http(s) URL; "
            "set TELNYX_API_BASE_URL like https://api.telnyx.com/v2."
        )
    if url.user or url.password or url.query_string or url.fragment:
        raise ConfigError(
            f"The API base URL ({shown}) must be scheme, host and path only, "
            "with no credentials, query or fragment; the key goes in TELNYX_API_KEY."
        )
    if url.scheme == "http" and not _is_loopback(url.host) and not insecure:
        raise ConfigError(
            f"Refusing to send the API key in clear text to {shown}: use https://, "
            "or pass --insecure if this plain-HTTP server is yours."
        )
    return str(url).rstrip("/")


class TelnyxClient:
    """``async with TelnyxClient(...) as client:``; the calls are safe to run concurrently."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        limiter: RateLimiter,
        policy: RetryPolicy,
        timeout: float = 30.0,
        connections: int = 64,
        insecure: bool = False,
        clock: Clock | None = None,
    ) -> None:
        key = api_key.strip() if isinstance(api_key, str) else ""
        if not key:
            raise ConfigError("No Telnyx API key: set TELNYX_API_KEY to an API v2 key of your account.")
        if not key.isprintable() or any(c.isspace() for c in key):
            raise ConfigError(
                "The API key contains spaces or control characters; copy it again into TELNYX_API_KEY."
            )
        if not timeout > 0 or connections < 1:
            raise ConfigError("The request timeout must be > 0 seconds and connections >= 1.")
        self._base = _base_url(base_url, insecure)
        self._base_url = URL(self._base, encoded=True)
        self._base_path = self._base_url.raw_path.rstrip("/")
        self._route_checked = False  # see _check_route
        self.__key = key
        self._limiter = limiter
        self._policy = policy
        self._timeout = timeout
        self._connections = connections
        self._clock: Clock = clock or SystemClock()
        self._session: aiohttp.ClientSession | None = None
        self._retries = self._transport_errors = 0
        self._responses: Counter[int] = Counter()
        self._bodies: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"TelnyxClient({self._base!r})"

    async def __aenter__(self) -> TelnyxClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers={
                "Authorization": f"Bearer {self.__key}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def limiter(self) -> RateLimiter:
        """The shared limiter (read-only use: its learned ``rate`` for the run's series)."""
        return self._limiter

    @property
    def rate(self) -> float | None:
        """Requests per second the shared limiter allows now; None while it paces nothing."""
        return self._limiter.rate

    @property
    def stats(self) -> ClientStats:
        limiter = self._limiter.stats
        return ClientStats(
            requests=limiter.sent,  # the limiter counts every start and every 429 already
            responses=dict(self._responses),
            retries=self._retries,
            rate_limited=limiter.rate_limited,
            transport_errors=self._transport_errors,
            holds=limiter.holds,
            held_seconds=limiter.held_seconds,
            peak_in_flight=limiter.peak_in_flight,
        )

    # --- the operations -----------------------------------------------------------------------

    async def update_profile(self, number: str, profile_id: str, *,
                             stop: anyio.Event | None = None) -> Outcome[NumberState]:
        """Assign ``number`` to ``profile_id``; ``""`` unassigns. Raises GaveUp or AuthError,
        or NotStarted when ``stop`` is set before the request (or its retry) could start."""
        body = self._bodies.get(profile_id)
        if body is None:
            if not isinstance(profile_id, str):
                # Telnyx quirk (docs/telnyx/API-NOTES.md): null keeps the current profile and still answers 200.
                raise TypeError("profile_id must be a str: a profile UUID, or '' to unassign (never None)")
            body = json.dumps({"messaging_profile_id": profile_id}).encode()
            if len(self._bodies) < _BODY_CACHE:  # a job names a handful of profiles
                self._bodies[profile_id] = body
        request = _Request("PATCH", f"/phone_numbers/{_segment(number)}/messaging", body=body)
        return await self._call(request, updated_number, stop)

    async def create_order(self, profile_id: str, numbers: Sequence[str]) -> Outcome[OrderStatus]:
        """POST a bulk order moving ``numbers`` to ``profile_id`` (``""`` unassigns; never
        null, as for PATCH). ``assign_only``: nothing but the profile changes, as with PATCH.
        Raises OrdersUnavailable, GaveUp (a 4xx such as "too many numbers"), or AuthError.

        Retried only when it surely never counted (429, no connection): otherwise a timeout or
        5xx raises GaveUp (retryable) at once, as the order may exist; the caller reads its
        numbers back instead of posting it twice."""
        if not isinstance(profile_id, str):
            raise TypeError("profile_id must be a str: a profile UUID, or '' to unassign (never None)")
        body = orjson.dumps({"messaging_profile_id": profile_id, "numbers": list(numbers),
                             "assign_only": True})
        return await self._order_call(_Request("POST", ORDERS_PATH, body=body))

    async def get_order(self, order_id: str) -> Outcome[OrderStatus]:
        """The order's three lists now. Raises OrdersUnavailable, GaveUp (404: unknown order)."""
        return await self._order_call(_Request("GET", f"{ORDERS_PATH}/{_segment(order_id)}"))

    async def _order_call(self, request: _Request) -> Outcome[OrderStatus]:
        try:
            outcome = await self._call(request, order_status)
        except AuthError as refused:
            if refused.status != 403:
                raise
            # A 403 on the order endpoint alone (bulk not enabled for the account): if the key
            # itself is refused, the PATCHes that follow stop the job with the same 403.
            raise OrdersUnavailable(ApiErrorInfo(403, code=refused.code, title=refused.title,
                                                 detail=refused.detail)) from None
        except GaveUp as gave_up:
            if request.method == "POST" and gave_up.info.status in (404, 405):
                raise OrdersUnavailable(gave_up.info) from None
            raise
        return outcome

    async def get_numbers(self, numbers: Sequence[str]) -> Outcome[dict[str, NumberState]]:
        """The current state of each number; numbers the account lacks are absent."""
        wanted = list(dict.fromkeys(numbers))
        found: dict[str, NumberState] = {}
        attempts = 0
        for start in range(0, len(wanted), PAGE_SIZE):
            chunk = wanted[start : start + PAGE_SIZE]
            listed, asked = ",".join(chunk), set(chunk)
            page = pages = 1
            while page <= pages:
                query = (("filter[phone_number]", listed), ("page[number]", str(page)),
                         ("page[size]", str(PAGE_SIZE)))
                request = _Request("GET", "/phone_numbers/messaging", query)
                outcome = await self._call(request, numbers_page)
                attempts += outcome.attempts
                states, pages = outcome.value
                found.update((s.phone_number, s) for s in states if s.phone_number in asked)
                page += 1
        return Outcome(found, attempts)

    async def list_profile_numbers(self, profile_id: str) -> list[str]:
        """Every number on the profile, all pages read before returning.

        API-NOTES: listing while moving numbers off the profile skips some, so the caller
        freezes this list first and only then writes.
        """
        path = f"/messaging_profiles/{_segment(profile_id)}/phone_numbers"
        numbers: dict[str, None] = {}
        page = pages = 1
        while page <= pages:
            query = (("page[number]", str(page)), ("page[size]", str(PAGE_SIZE)))
            states, pages = (await self._call(_Request("GET", path, query), numbers_page)).value
            if not states:
                break
            numbers.update(dict.fromkeys(s.phone_number for s in states))
            page += 1
        return list(numbers)

    async def get_profile(self, profile_id: str) -> Profile | None:
        """The profile, or None when the account has no such profile (404)."""
        request = _Request("GET", f"/messaging_profiles/{_segment(profile_id)}", missing_ok=True)
        found = (await self._call(request, profile)).value
        if found is None:
            await self._check_route()
        return found

    async def get_number(self, number: str) -> NumberState | None:
        """One number's state, or None when the account does not have it (404)."""
        request = _Request("GET", f"/phone_numbers/{_segment(number)}/messaging", missing_ok=True)
        found = (await self._call(request, maybe_number_state)).value
        if found is None:
            await self._check_route()
        return found

    async def _check_route(self) -> None:
        """Behind a base URL that does not end in /v2 every path may be unknown, and a 404
        would read as "no such profile (or number)": list one profile once to tell; a 404
        there raises (GaveUp), which the entry point names as the base URL's fault."""
        if self._route_checked or self._base_path.endswith("/v2"):
            return
        query = (("page[number]", "1"), ("page[size]", "1"))
        await self._call(_Request("GET", "/messaging_profiles", query), profiles_page)
        self._route_checked = True

    async def list_profiles(self) -> list[Profile]:
        """Every messaging profile of the account, all pages read before returning."""
        profiles: dict[str, Profile] = {}
        page = pages = 1
        while page <= pages:
            query = (("page[number]", str(page)), ("page[size]", str(PAGE_SIZE)))
            found, pages = (await self._call(_Request("GET", "/messaging_profiles", query),
                                             profiles_page)).value
            if all(p.id in profiles for p in found):  # empty, or a page met before
                break
            profiles.update((p.id, p) for p in found)
            page += 1
        return list(profiles.values())

    async def count_numbers(self, profile_id: str) -> int:
        """How many numbers the profile holds: ``meta.total_results`` of a one-row listing."""
        query = (("filter[messaging_profile_id]", profile_id), ("page[number]", "1"),
                 ("page[size]", "1"))
        request = _Request("GET", "/phone_numbers/messaging", query)
        return (await self._call(request, total_results)).value

    async def account_numbers(
        self, filters: Sequence[tuple[str, str]] = ()
    ) -> AsyncIterator[tuple[list[AccountNumber], int]]:
        """``GET /phone_numbers/messaging`` with ``filters``, every page of 250, in order.

        Yields each page with the listing's ``meta.total_results`` (for progress). Pages are
        read by number: a list that changes meanwhile can repeat a number (the caller drops it).
        """
        page = pages = 1
        previous: list[str] = []
        while page <= pages:
            query = (*filters, ("page[number]", str(page)), ("page[size]", str(PAGE_SIZE)))
            request = _Request("GET", "/phone_numbers/messaging", tuple(query))
            numbers, pages, total = (await self._call(request, account_page)).value
            listed = [n.phone_number for n in numbers]
            if not numbers or listed == previous:  # empty, or the same page again
                break
            previous = listed
            yield numbers, total
            page += 1

    # --- short codes (docs/telnyx/short-codes-10dlc.openapi.yml) ---------------------------------

    async def update_short_code(self, short_code_id: str, profile_id: str, *,
                                stop: anyio.Event | None = None) -> Outcome[ShortCode]:
        """Bind the short code (its UUID) to ``profile_id``; ``""`` unbinds. The spec types the
        field a required string (SHORT-CODES-10DLC-NOTES.md): never null. Raises as
        ``update_profile``."""
        if not isinstance(profile_id, str):
            raise TypeError("profile_id must be a str: a profile UUID, or '' to unbind (never None)")
        body = json.dumps({"messaging_profile_id": profile_id}).encode()
        request = _Request("PATCH", f"/short_codes/{_segment(short_code_id)}", body=body)
        return await self._call(request, short_code, stop)

    async def get_short_code(self, short_code_id: str) -> ShortCode | None:
        """One short code (by its UUID), or None when the account does not have it (404)."""
        request = _Request("GET", f"/short_codes/{_segment(short_code_id)}", missing_ok=True)
        return (await self._call(request, maybe_short_code)).value

    async def list_short_codes(self, profile_id: str | None = None, *,
                               unbound: bool = False) -> list[ShortCode]:
        """Every short code of the account, of one profile
        (``/messaging_profiles/{id}/short_codes``) or (``unbound``) on none
        (``filter[messaging_profile_id]=null``), all pages read before returning: a migrate
        freezes this list before its first write, as for numbers."""
        path = ("/short_codes" if profile_id is None
                else f"/messaging_profiles/{_segment(profile_id)}/short_codes")
        # The spec's string "null" means "bound to no profile" (SHORT-CODES-10DLC-NOTES.md).
        unbound_filter = (("filter[messaging_profile_id]", "null"),) if unbound else ()
        found: dict[str, ShortCode] = {}
        page = pages = 1
        while page <= pages:
            query = (*unbound_filter, ("page[number]", str(page)), ("page[size]", str(PAGE_SIZE)))
            codes, pages = (await self._call(_Request("GET", path, query), short_codes_page)).value
            if all(c.id in found for c in codes):  # empty, or a page met before
                break
            found.update((c.id, c) for c in codes)
            page += 1
        return list(found.values())

    # --- one call: retries around attempts ------------------------------------------------------

    async def _call(self, request: _Request, parse: Callable[[Any], T],
                    stop: anyio.Event | None = None, repeatable: bool | None = None) -> Outcome[T]:
        # A POST (a bulk order) is not safe to repeat: a retry of one that reached the server
        # would leave a second, untracked order. GET and PATCH (an absolute value) are.
        return await call_with_retry(partial(self._attempt, request, parse, stop), self._policy,
                                     clock=self._clock, on_retry=self._retried,
                                     repeatable=request.method != "POST" if repeatable is None
                                     else repeatable)

    async def send(self, method: str, path: str, parse: Callable[[Any], T], *,
                   query: Sequence[tuple[str, str]] = (), body: bytes | None = None,
                   missing_ok: bool = False, repeatable: bool | None = None,
                   stop: anyio.Event | None = None) -> Outcome[T]:
        """A call that another module defines (``campaigns.py``: 10DLC), through the same limiter,
        retry policy and classification as the calls above. ``path`` is percent-encoded below
        the base URL; ``repeatable`` defaults to "not a POST"."""
        return await self._call(_Request(method, path, tuple(query), body, missing_ok), parse, stop,
                                repeatable)

    def _retried(self, attempt: int, error: BaseException, wait: float) -> None:
        self._retries += 1
        log.debug("retry %d in %.2f s after %s", attempt, wait, error)

    async def _attempt(self, request: _Request, parse: Callable[[Any], T],
                       stop: anyio.Event | None = None) -> T:
        """One HTTP attempt through the limiter: the parsed answer, or raise.

        One coroutine from the limiter to the parsed value: every await a request makes
        resumes each frame above it, and this runs once per row."""
        session = self._session
        if session is None:
            raise RuntimeError("use the client inside `async with TelnyxClient(...)`")
        url = self._url(request)
        headers = _JSON_BODY if request.body is not None else None
        answer: _Answer | str
        wait: float | None = None
        async with self._limiter.slot(stop) as slot:
            try:
                async with session.request(request.method, url, data=request.body, headers=headers,
                                           allow_redirects=False) as response:
                    body = await response.read()
                    answer = _Answer(response.status, response.headers, body)
            except aiohttp.ClientConnectorCertificateError:
                answer = _CERTIFICATE
            except aiohttp.ClientSSLError:  # handshake: another protocol, version or cipher
                answer = _HANDSHAKE
            except aiohttp.ServerDisconnectedError:
                answer = "the server closed the connection without answering"
            except TimeoutError:
                answer = f"no answer within {self._timeout:g} s"
            except aiohttp.ClientConnectorError:
                answer = _NOT_CONNECTED
            except aiohttp.ClientError as error:
                answer = f"the connection failed ({type(error).__name__})"
            if not isinstance(answer, str):  # no answer: the gate's exit frees the slot
                wait = slot.observe(answer.status, answer.headers)
        # Raised out here, in no except block, so no aiohttp exception rides along as context.
        if isinstance(answer, str):
            # TLS fails the same way on every try, and is no verdict on the key: exit 7.
            if answer is _CERTIFICATE:
                raise ApiUnreachable(
                    f"The TLS certificate of {self._base_url.host} could not be verified; "
                    "check TELNYX_API_BASE_URL and the system's CA certificates."
                )
            if answer is _HANDSHAKE:
                raise ApiUnreachable(
                    f"The TLS handshake with {self._base_url.host} failed; check "
                    "TELNYX_API_BASE_URL (an https:// URL to a server that speaks plain http "
                    "fails this way) and the system's TLS settings."
                )
            self._transport_errors += 1
            detail = f"{request.target}: {answer}"
            if answer is _NOT_CONNECTED:  # never reached the server: safe to send again
                raise NotSent(ApiErrorInfo(None, detail=detail), detail)
            raise Transient(ApiErrorInfo(None, detail=detail), detail)
        payload = self._classify(request, answer, wait)
        try:
            return parse(payload)
        except BadShape as problem:
            detail = f"{request.target}: HTTP {answer.status} answer unusable: {problem}"
            raise Permanent(ApiErrorInfo(answer.status, detail=detail), detail) from None

    def _url(self, request: _Request) -> URL:
        # encoded=True: the path is percent-encoded already and must reach the server as it
        # is (a "+" re-quoted or decoded would become a space).
        if not request.query:
            return self._base_url.with_path(self._base_path + request.path, encoded=True)
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe=',')}" for k, v in request.query)
        return URL(f"{self._base}{request.path}?{query}", encoded=True)

    def _classify(self, request: _Request, answer: _Answer, wait: float | None) -> Any:
        status = answer.status
        self._responses[status] += 1
        payload, unusable = _decode(answer)
        if 200 <= status < 300 or (status == 404 and request.missing_ok):
            if unusable and status != 404:
                raise Permanent(ApiErrorInfo(status, detail=f"{request.target}: {unusable}"))
            return payload if status != 404 else None
        info = self._error_info(request, status, payload, unusable)
        message = f"{request.target}: {info.describe()}"
        if status in (401, 403):
            raise AuthError(
                f"The Telnyx API refused the API key ({info.describe()}). Check the key "
                "($TELNYX_API_KEY, or the file --api-key-file names): it must be a current API v2 key of this account, allowed to change number settings.",
                status=status, code=info.code, title=info.title, detail=info.detail,
            )
        if status == 429:
            raise RateLimited(info, wait or 0.0, message)
        if status == 408 or status >= 500:
            raise Transient(info, message)
        raise Permanent(info, message)

    def _error_info(self, request: _Request, status: int, payload: Any, why: str | None) -> ApiErrorInfo:
        """Telnyx's first error, verbatim (minus any echo of the key), else a clear stand-in."""
        errors = payload.get("errors") if isinstance(payload, dict) else None
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else None
        if first is None:
            if 300 <= status < 400:
                why = "a redirect; check TELNYX_API_BASE_URL"
            return ApiErrorInfo(status, detail=f"{request.target}: {why or 'no Telnyx error object'}")

        def text(name: str) -> str | None:
            value = first.get(name)
            return None if value is None else self._scrub(str(value))

        return ApiErrorInfo(status, code=text("code"), title=text("title"), detail=text("detail"))

    def _scrub(self, text: str) -> str:
        return redact(text, self.__key, "[redacted]")


def _decode(answer: _Answer) -> tuple[Any, str | None]:
    """The JSON body, or why there is none usable."""
    raw = answer.body
    if not raw:
        return None, "an empty body"
    try:
        # orjson: a read-back decodes a whole number object per row (and a snapshot page of
        # 250 of them), about 3x faster than json.loads.
        return orjson.loads(raw), None
    except ValueError:
        return None, f"a body that is not JSON ({answer.content_type or 'no content type'}, {len(raw)} bytes)"
