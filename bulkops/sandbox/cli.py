"""``bulkops sandbox`` (and ``python -m bulkops.sandbox``): serve a sandbox until stopped."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path

from bulkops.errors import ConfigError

from .config import DEFAULT_API_KEY, RETRY_AFTER_MODES, FaultConfig, LimiterKind, SandboxConfig
from .server import running_sandbox


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sandbox's flags (``bulkops sandbox --help`` lists them)."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    add("--port", type=int, default=8787, help="port to listen on; 0 picks a free one (default 8787)")
    add("--numbers", type=int, default=1000, help="phone numbers on the account (default 1000: the sample CSVs match it)")
    add("--profiles", type=int, default=5, help="messaging profiles on the account (default 5)")
    add("--short-codes", type=int, default=12,
        help="short codes on the account, round-robin over the profiles, every 6th on none (default 12)")
    add("--api-key", default=None, help=f"the key clients must send (default {DEFAULT_API_KEY!r})")
    add("--seed", type=int, default=0, help="seed of the account data and of the faults (default 0)")
    add("--rate", type=int, default=0, help="requests per window per API key; 0 = no limit (default 0)")
    add("--window", type=float, default=1.0, help="rate-limit window in seconds (default 1)")
    add("--limiter", choices=[kind.value for kind in LimiterKind], default=LimiterKind.FIXED.value,
        help="fixed window opened by a key's first request (Telnyx-like), fixed windows on the "
             "server's clock (fixed-clock), sliding log, or token bucket of --rate tokens "
             "refilled per --window (default fixed)")
    add("--retry-after", choices=RETRY_AFTER_MODES, default="seconds", help="Retry-After form on 429s")
    add("--error-rate", type=float, default=0.0, help="share of requests answered 5xx, not applied")
    add("--error-after-write-rate", type=float, default=0.0, help="share of writes applied, then answered 5xx")
    add("--drop-rate", type=float, default=0.0, help="share of requests whose connection is dropped")
    add("--latency-ms", type=float, default=0.0, help="mean added latency per request")
    add("--jitter-ms", type=float, default=0.0, help="uniform +- jitter around the latency")
    add("--latency-shape", choices=("uniform", "exponential"), default="uniform",
        help="uniform within --jitter-ms, or exponential of mean --latency-ms (a heavy tail)")
    add("--latency-before-count", action="store_true",
        help="the latency passes before the rate limiter counts the request (default: after)")
    add("--slow-rate", type=float, default=0.0, help="share of answers held back --slow-ms")
    add("--odd-header-rate", type=float, default=0.0,
        help="share of answers whose x-ratelimit-* headers are junk, as proxies send them")
    add("--slow-ms", type=float, default=30_000.0, help="how long a slow answer is held back (default 30000)")
    add("--bulk-max", type=int, default=1000, help="most numbers per bulk order (default 1000)")
    add("--bulk-speed", type=float, default=500.0, help="numbers per second a bulk order processes")
    add("--order-fail-rate", type=float, default=0.0,
        help="share of an order's numbers listed as failed and not applied (a PATCH then applies)")
    add("--order-stuck-rate", type=float, default=0.0,
        help="share of bulk orders accepted and never processed (their numbers stay pending)")
    add("--orders-refused", type=int, choices=(0, 403, 404, 405), default=0,
        help="answer the bulk-order routes with this status, as for an account without them (0 = serve them)")
    add("--assign-delay", type=float, default=2.0,
        help="mean seconds a 10DLC campaign link stays pending before ASSIGNED or FAILED_ASSIGNMENT (default 2)")
    add("--assign-fail-rate", type=float, default=0.0,
        help="share of 10DLC campaign links that end FAILED_ASSIGNMENT with failureReasons")
    add("--ignore-writes", action="store_true", help="answer PATCHes 200 without applying them")
    add("--control", action="store_true", help="expose /_control/* observability routes")
    add("--ready-file", type=Path, default=None, help="write the base URL to this file once listening")


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """Build (and so validate) the config; a bad value raises ConfigError."""
    faults = FaultConfig(
        error_rate=args.error_rate,
        error_after_write_rate=args.error_after_write_rate,
        drop_rate=args.drop_rate,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        latency_shape=args.latency_shape,
        latency_before_count=args.latency_before_count,
        slow_rate=args.slow_rate,
        slow_ms=args.slow_ms,
        odd_header_rate=args.odd_header_rate,
        seed=args.seed,
    )
    return SandboxConfig(
        numbers=args.numbers,
        profiles=args.profiles,
        short_codes=args.short_codes,
        seed=args.seed,
        api_key=args.api_key or DEFAULT_API_KEY,
        host=args.host,
        port=args.port,
        rate=args.rate,
        window=args.window,
        limiter=LimiterKind(args.limiter),
        retry_after=args.retry_after,
        faults=faults,
        bulk_max=args.bulk_max,
        bulk_speed=args.bulk_speed,
        order_fail_rate=args.order_fail_rate,
        order_stuck_rate=args.order_stuck_rate,
        orders_refused=args.orders_refused,
        ignore_writes=args.ignore_writes,
        assign_delay=args.assign_delay,
        assign_fail_rate=args.assign_fail_rate,
        control=args.control,
    )


def _write_ready_file(path: Path, base_url: str) -> None:
    """Atomically, so a parent polling for the file never reads half a URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sandbox-ready-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(base_url + "\n")
    os.replace(tmp, path)


async def serve(config: SandboxConfig, ready_file: Path | None = None) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running_sandbox(config) as sandbox:
            print(f"sandbox: {config.numbers} numbers, {config.short_codes} short codes, "
                  f"{config.profiles} profiles, seed {config.seed}")
            print(f"base URL: {sandbox.base_url}")
            print(f"export TELNYX_API_KEY={sandbox.api_key}")
            print(f"export TELNYX_API_BASE_URL={sandbox.base_url}")
            linkable = [c.campaign_id for c in sandbox.tendlc.campaigns.values() if c.refusal() is None]
            print(f"10DLC campaigns that take numbers: {', '.join(linkable)}")
            if config.control:
                print(f"control: {sandbox.origin}/_control/stats")
            print("press Ctrl-C to stop", flush=True)
            if ready_file is not None:
                _write_ready_file(ready_file, sandbox.base_url)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("sandbox stopped", flush=True)


def main(args: argparse.Namespace) -> int:
    """Entry point for ``bulkops sandbox``: serves until Ctrl-C/SIGTERM, returns 0.

    A bad flag or a busy port raises ConfigError (the bulkops CLI prints it).
    """
    config = config_from_args(args)
    asyncio.run(serve(config, args.ready_file))
    return 0


def run(argv: list[str] | None = None) -> int:
    """``python -m bulkops.sandbox``: same flags, errors printed without a traceback."""
    parser = argparse.ArgumentParser(prog="python -m bulkops.sandbox", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return main(args)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
