"""Write db/schema.sql: the migrations applied to a throwaway embedded database, dumped."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from h2s_checkout.store.embedded import EmbeddedPostgres
from h2s_checkout.store.migrate import apply_migrations


def dump_fresh_schema(target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="h2s-schema-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data", durable=False)
        try:
            apply_migrations(pg.start(), dump_schema=target)
        finally:
            pg.stop()


if __name__ == "__main__":
    dump_fresh_schema(Path(sys.argv[1] if len(sys.argv) > 1 else "db/schema.sql"))
