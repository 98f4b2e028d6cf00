"""The headline figures of a run: what docs/benchmarks.json carries and the Targets table
checks. Every figure is None when the run did not measure it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from h2s_bench import compare, profile, tracing_cost
from h2s_bench.growth import FILLED, UNFILLED, Growth, Paired, Reads
from h2s_bench.pooler import DIRECT, POOLED
from h2s_bench.run import Results


def _num(value: float | None, digits: int = 3) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)


def cpu_ms(results: Results, key: str, group: str = "server") -> float | None:
    """CPU milliseconds of ``group`` per answer of workload ``key``."""
    o, cpu = results.workloads.get(key), results.cpu.get(key)
    if o is None or cpu is None or o.rate <= 0 or group not in cpu.cores:
        return None
    return 1000 * cpu.cores[group] / o.rate


def pooler_figures(results: Results) -> dict[str, object] | None:
    """--pooler: each side's rate, p99 and server CPU per checkout, and their ratio."""
    p = results.pooler
    if p is None:
        return None
    return {
        "clients": p.clients,
        "pgbouncer_version": p.version,
        **{
            side: {
                "per_s": _num(rate(results, key), 1),
                "p99_ms": _num(p99(results, key), 1),
                "server_cpu_ms": _num(cpu_ms(results, key)),
            }
            for side, key in (("direct", DIRECT), ("pgbouncer", POOLED))
        },
        "pgbouncer_over_direct": _num(p.rate_ratio),
    }


def rate(results: Results, key: str) -> float | None:
    o = results.workloads.get(key)
    return o.rate if o is not None and o.ok else None


def p99(results: Results, key: str) -> float | None:
    o = results.workloads.get(key)
    return o.pct(99) if o is not None and o.latencies_ms else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def overhead_in_healthz_answers(results: Results, clients: int = 64) -> float | None:
    """(worker CPU per new checkout - ceiling A's CPU per checkout) / CPU per /healthz."""
    worker = cpu_ms(results, f"new0@{clients}")
    ceiling = cpu_ms(results, f"ceilA@{clients}", "generator")
    healthz = cpu_ms(results, "healthz@64")
    if worker is None or ceiling is None or not healthz:
        return None
    return (worker - ceiling) / healthz


def statemachine_ms(results: Results) -> float | None:
    """python-statemachine's share of the profiled worker's samples (its own frames and
    the stdlib it calls, not the listeners it runs) times that worker's CPU per checkout."""
    prof, worker = results.profile, cpu_ms(results, "profiled")
    if prof is None or worker is None or prof.samples == 0:
        return None
    return prof.share(profile.STATEMACHINE) / 100 * worker


def overhead_p99(results: Results, clients: int = 64, *, from_start: bool = False) -> float | None:
    """The p99 over the Stripe latency, after the workload's warm-up (``from_start``: the
    warm-up's requests, sent by every client in the same instant, included)."""
    lat = results.config.stripe_latency_ms
    o = results.workloads.get(f"new{int(lat)}@{clients}")
    if o is None or not o.latencies_ms:
        return None
    return (o.pct_from_start(99) if from_start else o.pct(99)) - lat


def peak_rss(results: Results) -> float | None:
    return max(results.rss_mb.values()) if results.rss_mb else None


def _side(c: compare.Comparison, name: str) -> dict[str, Any]:
    side = c.sides[name]
    slow = next(w for w in c.workloads if w.stripe_latency_ms)

    def rate_of(key: str) -> float | None:
        o = side.outcome(key)
        return _num(o.rate, 1) if o is not None else None

    def p99_of(key: str) -> float | None:
        o = side.outcome(key)
        return _num(o.pct(99), 1) if o is not None and o.latencies_ms else None

    trips = side.round_trips
    return {
        "label": side.label,
        "new_per_s_16": rate_of("new0@16"),
        "new_per_s_64": rate_of("new0@64"),
        "replay_per_s_64": rate_of("replay@64"),
        f"new_{int(slow.stripe_latency_ms)}ms_per_s_64": rate_of(slow.key),
        "new_p99_ms_64": p99_of("new0@64"),
        "replay_p99_ms_64": p99_of("replay@64"),
        "overhead_p99_ms_stripe_300ms_64_clients": _num(c.overhead_p99_ms(name, slow), 1),
        "overhead_p99_ms_stripe_300ms_64_clients_from_start": _num(
            c.overhead_p99_ms(name, slow, from_start=True), 1
        ),
        "worker_cpu_ms_per_answer": {w.key: _num(side.worker_ms(w.key), 3) for w in c.workloads},
        "round_trips": {
            kind: _num(trips[kind].round_trips, 2) if kind in trips else None
            for kind in ("new", "replay")
        },
        "rss_mb": _num(side.rss_mb, 1),
        "versions": c.versions.get(name, {}),
    }


def against_figures(results: Results) -> dict[str, Any]:
    c = results.comparison
    if c is None:
        return {"revision": None, "new_ratio_64": None, "replay_ratio_64": None}
    slow = next(w for w in c.workloads if w.stripe_latency_ms)
    return {
        "revision": c.sha,
        "new_ratio_64": _num(c.ratio("new0@64")),
        "replay_ratio_64": _num(c.ratio("replay@64")),
        "new_ratio_16": _num(c.ratio("new0@16")),
        f"new_{int(slow.stripe_latency_ms)}ms_ratio_64": _num(c.ratio(slow.key)),
        "blocks": c.order,
        "venv_reused": c.reused_venv,
        "current": _side(c, compare.CURRENT),
        "against": _side(c, compare.AGAINST),
    }


def _reads(r: Reads) -> dict[str, Any]:
    return {
        "checkouts_in_db": r.checkouts_in_db,
        "new_per_s_64": _num(r.rate("new"), 1),
        "replay_p99_ms": _num(r.p99("replay"), 1),
        "portal_queued_p99_ms": _num(r.p99("portal_queued"), 1),
        "portal_order_p99_ms": _num(r.p99("portal_order"), 1),
        "timeline_p99_ms": _num(r.p99("timeline"), 1),
        "timeline_by_order_p99_ms": _num(r.p99("timeline_order"), 1),
        "reconcile_pass_s": _num(r.reconcile_median_s),
        "doctor_s": _num(r.doctor_median_s),
        "doctor_command_s": _num(r.doctor_command_s),
    }


def _worst(*values: float | None) -> float | None:
    found = [v for v in values if v is not None]
    return max(found) if found else None


def prefill_figures(g: Growth | None) -> dict[str, Any]:
    if g is None:
        return {
            "rows": None,
            "new_rate_ratio_64": None,
            "replay_p99_ratio": None,
            "portal_p99_ms": None,
            "timeline_p99_ms": None,
            "reconcile_pass_s": None,
            "doctor_s": None,
        }
    a = g.after
    f = g.filled
    return {
        "rows": g.rows,
        "new_rate_ratio_64": _num(g.new_rate_ratio),
        "replay_p99_ratio": _num(g.replay_p99_ratio),
        "portal_p99_ms": _num(_worst(a.p99("portal_queued"), a.p99("portal_order")), 1),
        "timeline_p99_ms": _num(a.p99("timeline"), 1),
        "reconcile_pass_s": _num(a.reconcile_median_s),
        "doctor_s": _num(a.doctor_median_s),
        "prefill_s": _num(f.insert_s, 1) if f else None,
        "vacuum_analyze_s": _num(f.vacuum_s, 1) if f else None,
        "rows_written": dict(f.rows) if f else None,
        "database_mb": _num(f.database_bytes_after / 2**20, 0) if f else None,
        "before": _reads(g.before),
        "after": _reads(a),
        "side_by_side": _paired(g.paired),
    }


def _paired(p: Paired | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "blocks": list(p.order),
        **{
            side: {
                "new_per_s_64": _num(p.rate(side, "new"), 1),
                "replay_p99_ms_64": _num(p.p99(side, "replay"), 1),
                "replay_per_s_64": _num(p.rate(side, "replay"), 1),
                "worker_cpu_ms_per_answer": {
                    key: _num(p.cpu_ms(side, key, "server"), 3) for key in ("new", "replay")
                },
                "postgres_cpu_ms_per_answer": {
                    key: _num(p.cpu_ms(side, key, "postgres"), 3) for key in ("new", "replay")
                },
            }
            for side in (UNFILLED, FILLED)
        },
    }


def headline(results: Results) -> dict[str, Any]:
    env = results.env
    c = results.config
    trips, replay_trips = results.round_trips, results.replay_round_trips
    return {
        "revision": env.get("revision_sha") or None,
        "uncommitted_changes": bool(env.get("dirty")),
        "date": env.get("date"),
        "machine": env.get("machine"),
        "mode": "quick" if c.quick else "full",
        "wall_s": _num(results.wall_s, 0),
        "against": against_figures(results),
        "overhead_in_healthz_answers_64": _num(overhead_in_healthz_answers(results), 2),
        "statemachine_ms_per_checkout": _num(statemachine_ms(results)),
        "new_over_ceiling_a": {
            str(n): _num(ratio(rate(results, f"new0@{n}"), rate(results, f"ceilA@{n}")))
            for n in c.clients_fast
        },
        "replays_over_ceiling_b": _num(
            ratio(rate(results, f"replay@{c.replay_clients}"), rate(results, "healthz@64"))
        ),
        "round_trips": {
            "new": _num(trips.round_trips, 2) if trips else None,
            "replay": _num(replay_trips.round_trips, 2) if replay_trips else None,
        },
        "overhead_p99_ms_stripe_300ms_64_clients": _num(overhead_p99(results), 1),
        "overhead_p99_ms_stripe_300ms_64_clients_from_start": _num(
            overhead_p99(results, from_start=True), 1
        ),
        "rss_mb_max": _num(peak_rss(results), 1),
        "prefill": prefill_figures(results.growth),
        "pooler": pooler_figures(results),
        "rates": {
            "new_per_s": {str(n): _num(rate(results, f"new0@{n}"), 1) for n in c.clients_fast},
            "replay_per_s_64": _num(rate(results, f"replay@{c.replay_clients}"), 1),
            "healthz_per_s_64": _num(rate(results, "healthz@64"), 1),
            "ceiling_a_per_s": {
                str(n): _num(rate(results, f"ceilA@{n}"), 1) for n in c.clients_fast
            },
        },
        "tracing_worker_cpu_ms_per_checkout": (
            {mode: _num(results.tracing.worker_ms(mode)) for mode in tracing_cost.MODES}
            if results.tracing
            else None
        ),
        "cpu_ms_per_answer": {
            "worker_new_64": _num(cpu_ms(results, "new0@64")),
            "worker_replay_64": _num(cpu_ms(results, f"replay@{c.replay_clients}")),
            "worker_healthz_64": _num(cpu_ms(results, "healthz@64")),
            "ceiling_a_64": _num(cpu_ms(results, "ceilA@64", "generator")),
            "worker_profiled_64": _num(cpu_ms(results, "profiled")),
        },
    }


def write_json(path: Path, results: Results) -> None:
    path.write_text(json.dumps(headline(results), indent=2) + "\n")
