"""What OpenTelemetry tracing costs a new checkout: the worker's CPU per checkout with
tracing off, on at 100% sampling and on at 10%, each server exporting OTLP/HTTP through
the SDK's batch processor to a local receiver (`OtlpSink`, in this process: it counts
what arrives and decodes nothing, so its CPU is the generator's, not the worker's).

The three servers run side by side, one worker each, and take the load in turn in the
blocks off, 100%, 10%, 10%, 100%, off (each side twice, mirrored), so that a machine
whose speed drifts over the phase moves each side alike. The figure is CPU, not rate: the
rate on a shared 2-core machine moves with whatever else runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from h2s_bench import load
from h2s_bench.session import Session, say
from h2s_bench.stack import CpuSplit, ServerProcess, pooled_cpu

OFF, ON_100, ON_10 = "off", "on, 100% sampled", "on, 10% sampled"
MODES = (OFF, ON_100, ON_10)
_ORDER = (OFF, ON_100, ON_10, ON_10, ON_100, OFF)
_SAMPLING = {
    ON_100: {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    ON_10: {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
}


class OtlpSink:
    """A collector that takes OTLP/HTTP exports and counts them (requests, bytes)."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(size)
                with sink._lock:
                    sink.requests += 1
                    sink.bytes += size
                # An empty ExportTraceServiceResponse encodes to no bytes at all.
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class TracingCost:
    clients: int
    outcomes: dict[str, list[load.Outcome]] = field(default_factory=dict)
    cpu: dict[str, list[CpuSplit]] = field(default_factory=dict)
    exported_requests: int = 0
    exported_bytes: int = 0

    def outcome(self, mode: str) -> load.Outcome | None:
        runs = self.outcomes.get(mode)
        return load.pooled(runs[0].name, runs) if runs else None

    def worker_ms(self, mode: str) -> float | None:
        """The serving worker's CPU milliseconds per new checkout, over both blocks."""
        o, splits = self.outcome(mode), self.cpu.get(mode)
        if o is None or not splits or o.ok == 0:
            return None
        split = pooled_cpu(splits)
        return 1000 * split.cores.get("server", 0.0) * split.seconds / o.ok

    def overhead(self, mode: str) -> float | None:
        """Worker CPU per checkout over tracing off's, minus one (0.25: 25% more)."""
        on, off = self.worker_ms(mode), self.worker_ms(OFF)
        return None if on is None or not off else on / off - 1


def run_tracing(session: Session) -> TracingCost:
    """The three modes' blocks, on servers of their own; all stopped after."""
    config = session.config
    clients = max(config.clients_fast)
    result = TracingCost(clients)
    with OtlpSink() as sink:
        servers: dict[str, ServerProcess] = {}
        try:
            for mode in MODES:
                env = (
                    {}
                    if mode == OFF
                    else {
                        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
                        "OTEL_SERVICE_NAME": "h2s-checkout-bench",
                        **_SAMPLING[mode],
                    }
                )
                servers[mode] = ServerProcess(
                    session.db.dsn, session.emulator.url, session.work, workers=1, env=env
                ).start()
            for block, mode in enumerate(_ORDER):
                name = f"new checkouts, tracing {mode}, {clients} clients"
                outcome, cpu = session.run_workload(
                    name,
                    load.new_checkouts(session.run_id, f"otel{block}", session.skus),
                    clients=clients,
                    duration_s=config.duration_s,
                    server=servers[mode],
                    idle=[s for m, s in servers.items() if m != mode],
                )
                result.outcomes.setdefault(mode, []).append(outcome)
                result.cpu.setdefault(mode, []).append(cpu)
        finally:
            for server in servers.values():
                server.stop()
        result.exported_requests, result.exported_bytes = sink.requests, sink.bytes
    for mode in MODES:
        ms, more = result.worker_ms(mode), result.overhead(mode)
        say(
            f"tracing {mode}: worker {ms or 0:.3f} ms per checkout"
            + (f" ({more:+.1%})" if more is not None and mode != OFF else "")
        )
    return result
