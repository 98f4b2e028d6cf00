"""Benchmark harness: `python -m h2s_checkout.bench` (`just bench`).

Starts the service as in production (granian, PostgreSQL, the Stripe emulator as its own
process), drives it with an aiohttp load generator, measures the ceilings it is compared
with, and writes ``docs/benchmarks.md`` and ``docs/benchmarks.png``. See
``docs/benchmarks.md`` for what each figure means.
"""
