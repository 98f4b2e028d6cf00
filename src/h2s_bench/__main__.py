"""`python -m h2s_bench [--quick] [--out DIR] [--against REV] [--prefill N] [--pooler]`:
run, print and write the figures."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from h2s_bench import figures, report
from h2s_bench.run import run_bench
from h2s_bench.session import BenchConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m h2s_bench",
        description="Benchmark the service under load against its ceilings; writes "
        "benchmarks.md, benchmarks.json and benchmarks.png into --out.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds, tiny counts: checks the harness"
    )
    parser.add_argument("--out", type=Path, default=Path("docs"), help="default: docs/")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or None,
        help="PostgreSQL to use (default: $DATABASE_URL, else an embedded one in a temp dir)",
    )
    parser.add_argument(
        "--no-durable",
        action="store_true",
        help="embedded PostgreSQL with fsync off (the default is durable, as in production)",
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per workload")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument(
        "--keep-workdir",
        type=Path,
        default=None,
        help="keep logs, the profile and the --against worktree here",
    )
    parser.add_argument(
        "--against",
        metavar="REV",
        default=None,
        help="also serve git revision REV (own worktree, venv, database) beside this code "
        "and compare the two under the same loads",
    )
    parser.add_argument(
        "--against-python",
        type=Path,
        default=None,
        metavar="PYTHON",
        help="an interpreter that has REV installed: no venv is built for it",
    )
    parser.add_argument(
        "--against-rounds",
        type=int,
        default=2,
        metavar="N",
        help="pairs of blocks per side in the comparison (default 2: this code, REV, REV, "
        "this code)",
    )
    parser.add_argument(
        "--prefill",
        type=int,
        default=0,
        metavar="N",
        help="at the end, measure again after N finished checkouts are written to the database",
    )
    parser.add_argument(
        "--pooler",
        action="store_true",
        help="also measure new checkouts through PgBouncer in transaction mode "
        "(H2S_DB_POOLER=transaction) beside the same load straight to PostgreSQL; "
        "skipped, with the reason in the report, where pgbouncer is not installed",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        config = BenchConfig.quick_config(out, args.database_url)
    else:
        config = BenchConfig(out_dir=out, database_url=args.database_url)
        if args.no_durable:
            config.durable = False
    if args.duration is not None:
        config.duration_s = config.ceiling_duration_s = args.duration
        config.slow_duration_s = max(args.duration, 1.0)
    config.run_profile = not args.no_profile
    config.against = args.against
    config.against_python = args.against_python.absolute() if args.against_python else None
    if args.against_rounds < 1:
        build_parser().error("--against-rounds takes a number of pairs, at least 1")
    config.compare_rounds = args.against_rounds
    if args.prefill < 0:
        build_parser().error("--prefill takes a number of checkouts (0: none)")
    config.prefill = args.prefill
    config.pooler = args.pooler

    results = run_bench(config, keep_workdir=args.keep_workdir)

    png = out / "benchmarks.png"
    problem = report.plot(results, png)
    if problem:
        results.notes.append(problem)
    block = report.generated_block(results, None if problem else png.name)
    md = out / "benchmarks.md"
    report.write_markdown(md, block)
    data = out / "benchmarks.json"
    figures.write_json(data, results)
    print()
    print(block)
    print(f"wrote {md}, {data}" + ("" if problem else f" and {png}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
