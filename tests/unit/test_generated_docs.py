"""Generated files in the repository match what the code produces today."""

from __future__ import annotations

from pathlib import Path

from h2s_checkout.domain.diagram import document

ROOT = Path(__file__).resolve().parents[2]


def test_committed_state_diagram_matches_the_machine():
    committed = (ROOT / "docs" / "state-diagram.md").read_text()
    assert committed == document(), "run `just docs` and commit docs/state-diagram.md"
