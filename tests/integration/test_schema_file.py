"""db/schema.sql is what the migrations produce, so every schema change shows as a diff."""

from __future__ import annotations

from pathlib import Path

from h2s_checkout.store.schema_dump import dump_fresh_schema

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schema_matches_the_migrations(tmp_path):
    fresh = tmp_path / "schema.sql"
    dump_fresh_schema(fresh)
    assert (ROOT / "db" / "schema.sql").read_text() == fresh.read_text(), (
        "run `just schema` and commit db/schema.sql"
    )
