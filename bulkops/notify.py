"""Word when a run ends: one POST of JSON to the operator's webhook (``run --notify URL``).

Whatever the outcome (done, failed rows, a failure storm, a refused key, interrupted, bad
input), the run ends with one notification: ``finished_payload`` says what happened, with a
one-line ``text`` a chat webhook shows as it is. A notification never changes the run's exit
code: each try has ``TIMEOUT`` seconds, ``TRIES`` tries with backoff, and a last failure is
logged. The URL is checked before anything is sent (https, or http to loopback only, as for
--base-url) and shown in logs as scheme and host only: a webhook's path often holds its
token. The API key is never in it: the body is scrubbed of it whatever it holds.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import anyio
from yarl import URL

from bulkops import __version__
from bulkops.errors import ConfigError

log = logging.getLogger("bulkops")

TIMEOUT = 5.0  # seconds per try
TRIES = 3
BACKOFF = 0.5  # seconds before the second try, doubled before each later one


def _loopback(host: str) -> bool:
    try:
        return host.lower().rstrip(".") == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown(url: str) -> str:
    """How logs and messages name the webhook: scheme and host, never its path or query."""
    parsed = URL(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.explicit_port}"
                                                 if parsed.explicit_port else "")


def check_url(url: str, *, insecure: bool = False, option: str = "--notify") -> str:
    """The webhook URL, refused before anything is sent unless it is https, or http to a
    loopback host (or any host with --insecure)."""
    try:
        parsed = URL(url.strip())
    except (TypeError, ValueError):
        parsed = URL()
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"{option}: {url!r} is not an http(s) URL; give the webhook's address "
                          "like https://hooks.example.com/...")
    if parsed.user or parsed.password:
        raise ConfigError(f"{option}: the webhook URL ({shown(str(parsed))}) must not hold a user "
                          "or password; use the token the webhook service puts in its path")
    if parsed.scheme == "http" and not _loopback(parsed.host) and not insecure:
        raise ConfigError(f"{option}: refusing to send the run's outcome in clear text to "
                          f"{shown(str(parsed))}: use https://, or pass --insecure if this "
                          "plain-HTTP server is yours")
    return str(parsed)


def summary_text(payload: Mapping[str, Any]) -> str:
    """The one human line: what, how it ended, the counts, how long."""
    counts = payload.get("counts") or {}
    shown_counts = ", ".join(f"{k} {v}" for k, v in counts.items()
                             if v and k not in ("total",)) or "no rows"
    text = (f"bulkops {payload['kind']} job {payload['job']}: {payload['state']}, exit code "
            f"{payload['exit_code']}; {shown_counts}")
    if payload.get("duration_s") is not None:
        text += f"; {payload['duration_s']:g} s"
    if payload.get("error"):
        text += f"; {str(payload['error']).splitlines()[0]}"
    return text


async def send(url: str, payload: Mapping[str, Any], *, secret: str | None = None,
               tries: int = TRIES, timeout: float = TIMEOUT, backoff: float = BACKOFF) -> bool:
    """POST ``payload`` as JSON to ``url``; True once a try is answered 2xx. Never raises
    for the webhook's sake: a failure is logged, and the caller's outcome stands."""
    body = json.dumps(dict(payload), ensure_ascii=False, separators=(",", ":"))
    if secret:
        body = body.replace(secret, "***")
    why = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        for attempt in range(1, tries + 1):
            try:
                async with session.post(url, data=body.encode("utf-8"), headers={
                        "Content-Type": "application/json",
                        "User-Agent": f"bulkops/{__version__}"}, allow_redirects=False) as answer:
                    if 200 <= answer.status < 300:
                        log.info("notification sent to %s (HTTP %d, try %d)", shown(url),
                                 answer.status, attempt)
                        return True
                    why = f"HTTP {answer.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                why = type(exc).__name__ if isinstance(exc, TimeoutError) else (
                    f"{type(exc).__name__}: could not connect or no answer")
            if attempt < tries:
                await anyio.sleep(backoff * 2 ** (attempt - 1))
    log.warning("warning: the notification to %s failed after %d tries (%s); the run's outcome "
                "and exit code are unchanged: check the --notify URL", shown(url), tries, why)
    return False
