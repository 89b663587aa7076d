"""Benchmarks that prove bulkops' promises: speed near the rate limit, low overhead, flat
memory at a million rows, fast exact resume after kill -9, and exact results under faults.

Run ``python -m bench [--quick]`` from the repository root. Each scenario measures bulkops
side by side with what a user would otherwise run (the reference loops in
``bench/reference.py``), on the same machine in the same run, and writes its table to
``bench/RESULTS.md``. Speed is proven only here: the test suite never asserts timings.
bulkops never imports this package.
"""
