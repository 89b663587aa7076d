"""The Telnyx HTTP API: client, answers, rate limiter, rate-limit headers, retry policy, clock."""
