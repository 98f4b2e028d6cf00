"""Command line: serve the Stripe emulator in this process until interrupted."""

import argparse
import asyncio
import contextlib
import logging
import signal

from .app import EmulatorApp
from .httpserver import HTTPServer
from .state import EmulatorState


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m h2s_checkout.payments.emulator", description="Local Stripe API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=None,
        help="added to every API request (default: $H2S_EMULATOR_LATENCY_MS or 0)",
    )
    parser.add_argument(
        "--public-base-url", default=None, help="prefix of the sessions' url (default: own address)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of probabilistic faults")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> None:
    state = EmulatorState(latency_ms=args.latency_ms, seed=args.seed)
    server = HTTPServer(EmulatorApp(state), args.host, args.port)
    host, port = await server.start()
    state.public_base_url = args.public_base_url or f"http://{host}:{port}"
    # Printed on stdout, flushed: a parent process waits for this line.
    print(f"stripe emulator listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


if __name__ == "__main__":
    main()
