"""Generated files in docs/ match what the code draws today (`just docs` refreshes them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from h2s_checkout.cli.diagram import dot_source, mermaid_document, render_svg

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_state_diagram_matches_the_machine():
    assert (DOCS / "state-diagram.md").read_text() == mermaid_document(), "run `just docs`"
    assert (DOCS / "state-diagram.dot").read_text() == dot_source(), "run `just docs`"


def test_committed_svg_is_the_rendering_of_the_machine():
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must have Graphviz: .ci/run installs it")
        pytest.skip("no Graphviz here: apt-get install graphviz")
    assert (DOCS / "state-diagram.svg").read_text() == render_svg(dot_source()), "run `just docs`"
