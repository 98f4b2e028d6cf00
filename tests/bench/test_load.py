"""The load generator's closed loop: a warm-up's latencies are kept apart, its answers not."""

from __future__ import annotations

import asyncio

from aiohttp import web

from h2s_bench import load


async def test_the_warm_up_counts_in_the_rate_and_not_in_the_latencies() -> None:
    async def created(_: web.Request) -> web.Response:
        await asyncio.sleep(0.01)
        return web.Response(status=201)

    app = web.Application()
    app.router.add_post("/api/checkout", created)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        outcome = await load.closed_loop(
            "warm",
            [f"http://127.0.0.1:{port}"],
            load.new_checkouts("t", "warm", ["tv-mount"]),
            clients=4,
            duration_s=0.6,
            max_requests=10_000,
            expect_status=201,
            warm_s=0.2,
        )
    finally:
        await runner.cleanup()

    assert outcome.warm_latencies_ms
    assert outcome.latencies_ms
    assert outcome.ok == len(outcome.latencies_ms) + len(outcome.warm_latencies_ms)
    # Roughly a third of the loop's time was the warm-up.
    assert len(outcome.warm_latencies_ms) < len(outcome.latencies_ms)
    slowest = max(outcome.latencies_ms + outcome.warm_latencies_ms)
    assert outcome.pct_from_start(100) == slowest
    assert outcome.pct(100) == max(outcome.latencies_ms)
    pooled = load.pooled("both", [outcome, outcome])
    assert len(pooled.warm_latencies_ms) == 2 * len(outcome.warm_latencies_ms)
