"""Command line of the Stripe emulator.

    python -m stripe_checkout_emulator [serve] [--port 12111 ...]
    python -m stripe_checkout_emulator send-event --emulator URL --type TYPE --session ID
    python -m stripe_checkout_emulator redeliver --emulator URL EVENT_ID

`serve` (the default) runs the emulator in this process until interrupted; the
other commands drive a running one through its admin API, which needs the admin token
the emulator was given (`--admin-token`, $H2S_EMULATOR_ADMIN_TOKEN) or wrote
(`--admin-token-file`); made up at start, it is printed after the listening line.
"""

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .access import new_admin_token
from .events import ADMIN_TOKEN_ENV, SESSION_EVENT_TYPES, WEBHOOK_SECRET_ENV, WEBHOOK_URL_ENV

# The serving modules (the SDK, aiohttp) load only for `serve`: the commands
# that drive a running emulator start quickly.

PROG = "python -m stripe_checkout_emulator"
DEFAULT_EMULATOR = "http://127.0.0.1:12111"
COMMANDS = ("serve", "send-event", "redeliver")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "serve"
    if command == "serve":
        _serve_main(argv)
    elif command == "send-event":
        sys.exit(_send_event(argv))
    else:
        sys.exit(_redeliver(argv))


def _serve_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} [serve]",
        description="Local Stripe API emulator. Other commands: send-event, redeliver "
        "(see `<command> --help`).",
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
    parser.add_argument(
        "--webhook-url",
        default=os.environ.get(WEBHOOK_URL_ENV) or None,
        help=f"endpoint the events are POSTed to (default: ${WEBHOOK_URL_ENV}; none: not sent)",
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get(WEBHOOK_SECRET_ENV) or None,
        help=f"signing secret, whsec_... (default: ${WEBHOOK_SECRET_ENV})",
    )
    parser.add_argument(
        "--state",
        default=None,
        metavar="PATH",
        help="keep sessions, events, idempotent answers and undelivered webhooks in this "
        "SQLite file, written on every change, and resume from it (default: memory only)",
    )
    _admin_token_arguments(parser, made="made up and printed, or written to the file")
    from .webhooks import RetryPolicy

    defaults = RetryPolicy()
    parser.add_argument(
        "--webhook-retry-base",
        type=float,
        default=defaults.base_s,
        help="seconds before the first retry; doubles each time (default: %(default)s)",
    )
    parser.add_argument(
        "--webhook-max-attempts",
        type=int,
        default=defaults.max_attempts,
        help="attempts per delivery, the first included (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> None:
    from .app import EmulatorApp
    from .gc_pauses import freeze_survivors_of_full_collections
    from .httpserver import HTTPServer
    from .state import EmulatorState
    from .webhooks import RetryPolicy

    admin_token, announce = _serving_admin_token(args)
    retry = RetryPolicy(base_s=args.webhook_retry_base, max_attempts=args.webhook_max_attempts)
    state = EmulatorState(
        latency_ms=args.latency_ms,
        seed=args.seed,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        webhook_retry=retry,
        state_path=args.state,
    )
    server = HTTPServer(EmulatorApp(state, admin_token), args.host, args.port)
    host, port = await server.start()
    await state.start()
    state.public_base_url = args.public_base_url or f"http://{host}:{port}"
    # It keeps every session and event it made: full collections walk only what is new.
    freeze_survivors_of_full_collections()
    # Printed on stdout, flushed: a parent process waits for this line.
    print(f"stripe emulator listening on http://{host}:{port}", flush=True)
    if announce:
        print(announce, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()
    await state.stop()
    state.close()


def _send_event(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} send-event",
        description="Apply an event's change to a session of a running emulator and send "
        "the event to its webhook endpoint; prints the event.",
    )
    parser.add_argument("--emulator", default=DEFAULT_EMULATOR, help="default: %(default)s")
    parser.add_argument(
        "--type",
        required=True,
        help=f"event type: {', '.join(SESSION_EVENT_TYPES)} (others need --force)",
    )
    parser.add_argument("--session", required=True, help="checkout session id, cs_test_...")
    parser.add_argument("--email", default=None, help="customer email for completed")
    parser.add_argument(
        "--force",
        action="store_true",
        help="send the event even if the session's state does not allow the change",
    )
    _admin_token_arguments(parser, made="required")
    args = parser.parse_args(argv)
    body = {"type": args.type, "email": args.email, "force": args.force}
    path = f"/_emulator/sessions/{args.session}/events"
    return _admin_post(args.emulator, _client_admin_token(parser, args), path, body)


def _redeliver(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} redeliver", description="Send a logged event to the webhook endpoint again."
    )
    parser.add_argument("--emulator", default=DEFAULT_EMULATOR, help="default: %(default)s")
    parser.add_argument("event_id", help="evt_...")
    _admin_token_arguments(parser, made="required")
    args = parser.parse_args(argv)
    path = f"/_emulator/events/{args.event_id}/redeliver"
    return _admin_post(args.emulator, _client_admin_token(parser, args), path, {})


def _admin_token_arguments(parser: argparse.ArgumentParser, *, made: str) -> None:
    parser.add_argument(
        "--admin-token",
        default=os.environ.get(ADMIN_TOKEN_ENV) or None,
        help=f"the admin API's bearer token (default: ${ADMIN_TOKEN_ENV}; else {made})",
    )
    parser.add_argument(
        "--admin-token-file",
        default=None,
        metavar="PATH",
        help="read the admin token from this file (serve: made and written there, mode "
        "0600, when the file does not exist yet)",
    )


def _serving_admin_token(args: argparse.Namespace) -> tuple[str, str | None]:
    """The token `serve` opens its admin API with, and the line that tells where it is."""
    if args.admin_token:
        return args.admin_token, None
    if args.admin_token_file:
        path = Path(args.admin_token_file)
        if path.exists() and path.read_text().strip():
            return path.read_text().strip(), f"admin token in {path}"
        token = new_admin_token()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        return token, f"admin token in {path}"
    token = new_admin_token()
    return token, f"admin token: {token}"


def _client_admin_token(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    if args.admin_token:
        return str(args.admin_token)
    if args.admin_token_file:
        try:
            return Path(args.admin_token_file).read_text().strip()
        except OSError as exc:
            parser.error(f"cannot read {args.admin_token_file}: {exc}")
    parser.error(f"the admin API needs --admin-token, ${ADMIN_TOKEN_ENV} or --admin-token-file")


def _admin_post(base_url: str, admin_token: str, path: str, body: dict[str, object]) -> int:
    # urllib rather than httpx: a one-shot command should not pay for an SSL context.
    request = urllib.request.Request(  # noqa: S310 - the admin URL given
        base_url.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {admin_token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            payload = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        print(f"HTTP {exc.code}: {exc.read().decode('utf-8', 'replace')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"cannot reach the emulator at {base_url}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(payload.get("event", payload), indent=2))
    return 0


if __name__ == "__main__":
    main()
