"""`just docs`: the state diagram, drawn by python-statemachine from CheckoutMachine itself.

`python -m h2s_checkout.cli.diagram [DIR]` writes docs/state-diagram.{md,dot,svg}; a test
fails when they differ from what the class draws today, so the picture cannot drift from
the code. A development command (it needs pydot, from the dev extra), not one of
`h2s-checkout`'s.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from statemachine.contrib.diagram import DotGraphMachine, MermaidGraphMachine

from h2s_checkout.domain.machine import CheckoutMachine

DOCS = Path(__file__).resolve().parents[3] / "docs"


def mermaid_document() -> str:
    return (
        "# The checkout state machine\n\n"
        "Drawn by python-statemachine from `h2s_checkout.domain.machine.CheckoutMachine`\n"
        "(`just docs`); a test fails when this file and the class disagree. The same graph\n"
        "as an image: [state-diagram.svg](state-diagram.svg).\n\n"
        "```mermaid\n" + MermaidGraphMachine(CheckoutMachine)().rstrip() + "\n```\n"
    )


def dot_source() -> str:
    """Graphviz source; the library names its start node after an object id, so that
    name is made stable."""
    source: str = DotGraphMachine(CheckoutMachine)().to_string()
    return re.sub(r"(__initial|__atomic)_\d+", r"\1", source)


def render_svg(dot: str) -> str:
    """SVG from Graphviz's `dot` (Debian's graphviz package)."""
    return subprocess.run(
        ["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True
    ).stdout


def write_docs(docs: Path = DOCS) -> None:
    (docs / "state-diagram.md").write_text(mermaid_document())
    dot = dot_source()
    (docs / "state-diagram.dot").write_text(dot)
    (docs / "state-diagram.svg").write_text(render_svg(dot))


if __name__ == "__main__":
    write_docs(Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS)
