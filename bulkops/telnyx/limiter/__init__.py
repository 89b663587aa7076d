"""The parts of the shared rate limiter (``bulkops.telnyx.ratelimit`` puts them together).

Each part keeps its own state and reads time only from the moments it is given: ``learned``
(what the headers taught), ``pacer`` (GCRA), ``hold`` (the 429 hold), ``aimd`` (the cap from
429s), ``guard`` (the budget guard) and ``views`` (its two views of the server's count).
docs/design.md, section "Rate limiter", says why.
"""
