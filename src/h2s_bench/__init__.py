"""The benchmark harness of h2s-checkout: `python -m h2s_bench` (`just bench`), a development
tool that does not ship in the wheel and runs from the source tree. It starts the service
as in production (`h2s-checkout serve` under granian, PostgreSQL, the Stripe emulator as its
own process), drives it with an aiohttp load generator, measures the ceilings it is compared
with, and writes ``docs/benchmarks.md``, ``.json`` and ``.png`` (``docs/benchmarks.md`` says
what each figure means). It imports the service only where it measures the service's own
code (the ceilings replay its flow, the prefill runs its reconciler and doctor); `session.py`
holds what the main run (`run.py`) shares with its phases (`compare.py` for `--against`,
`growth.py` for `--prefill`).
"""
