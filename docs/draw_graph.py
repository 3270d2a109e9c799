"""Draw the computational graph of docs/backprop.md as an SVG, from the code's own node list.

Run ``python docs/draw_graph.py`` to rewrite ``docs/backprop_graph.svg``. The names,
shapes and formulas come from ``fastmlp.backprop`` (``NODES``, ``GRADIENTS``,
``SHAPES``, ``FORMULAS``), the same tables ``forward_backward`` and the hand example
use, so the picture cannot name a node the code does not have. No dependency beyond
fastmlp itself: the SVG is written as text. ``tests/test_docs.py`` checks that the
committed SVG is what this script draws today.

Each edge ``A -> B`` of the forward pass carries the value ``A`` (black, above or left
of the edge, with its shape); the arrow drawn back along it carries the gradient
``dA`` (red, below or right, with its formula and shape).
"""

from __future__ import annotations

import sys
from pathlib import Path
from xml.sax.saxutils import escape

from fastmlp.backprop import FORMULAS, GRADIENTS, NODES, SHAPES

OUT = Path(__file__).with_name("backprop_graph.svg")

# Layout: the chain of nodes on one row, each parameter (and the targets Y) above
# the node it feeds.
CHAIN = ("X", "H0", "H1", "H2", "H3", "Z", "P", "L")
ABOVE = {"W1": "H0", "b1": "H1", "W2": "H3", "b2": "Z", "Y": "L"}
STEP, LEFT, ROW, TOP = 182, 70, 300, 110
BOX_W, BOX_H = 58, 40
FWD, BWD = "#111111", "#c0392b"


def _pretty(formula: str) -> str:
    """ASCII formula of fastmlp.backprop.FORMULAS -> the symbols of the doc."""
    return (formula.replace("^T", "ᵀ").replace(" * ", " ⊙ ").replace("alpha", "α")
            .replace(" - ", " − "))


def _shape(name: str) -> str:
    dims = SHAPES[name]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _text(x, y, text, *, color=FWD, anchor="middle", size=13, weight="normal", style=""):
    extra = f' font-style="{style}"' if style else ""
    return (f'<text x="{x:.0f}" y="{y:.0f}" fill="{color}" font-size="{size}" '
            f'text-anchor="{anchor}" font-weight="{weight}"{extra}>{escape(text)}</text>')


def _line(x1, y1, x2, y2, color, marker):
    return (f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="{color}" '
            f'stroke-width="1.6" marker-end="url(#{marker})"/>')


def _box(x, y, name, caption, *, caption_above=False):
    fill = "#eef3fb" if name in NODES or name == "X" else "#f4f4f4"
    if name == "L":
        fill = "#fdf2e9"
    return [
        f'<rect x="{x - BOX_W / 2:.0f}" y="{y - BOX_H / 2:.0f}" width="{BOX_W}" '
        f'height="{BOX_H}" rx="7" fill="{fill}" stroke="#555555"/>',
        _text(x, y + 5, name, size=16, weight="bold"),
        _text(x, y - BOX_H / 2 - 7 if caption_above else y + BOX_H / 2 + 15, caption,
              size=11, color="#555555", style="italic"),
    ]


def _gradient_label(name: str) -> str:
    return f"{name} = {_pretty(FORMULAS[name])}"


def render() -> str:
    """Return the SVG text of the graph."""
    missing = [g for g in GRADIENTS if g[1:] not in CHAIN and g[1:] not in ABOVE]
    unknown = [n for n in NODES if n not in CHAIN]
    if missing or unknown:  # the code's graph changed: update the layout above
        raise ValueError(f"layout does not place {missing + unknown}")
    x = {name: LEFT + i * STEP for i, name in enumerate(CHAIN)}
    x.update({p: x[below] for p, below in ABOVE.items()})
    width, height = LEFT * 2 + 40 + STEP * (len(CHAIN) - 1), 490
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">',
        "<defs>",
        *(f'<marker id="{m}" markerWidth="10" markerHeight="8" refX="9" refY="4" '
          f'orient="auto"><path d="M0,0 L10,4 L0,8 z" fill="{c}"/></marker>'
          for m, c in (("fwd", FWD), ("bwd", BWD))),
        "</defs>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        _text(LEFT - BOX_W / 2, 28, "fastmlp: the graph of forward_backward", anchor="start",
              size=17, weight="bold"),
        _text(LEFT - BOX_W / 2, 50, "black: forward value and its shape;  red: the gradient "
              "sent back along the same edge, dA = ∂L/∂A, same shape as A", anchor="start",
              size=12, color="#333333"),
    ]
    # horizontal edges of the chain: value above, gradient below
    for a, b in zip(CHAIN[:-1], CHAIN[1:], strict=True):
        x1, x2 = x[a] + BOX_W / 2, x[b] - BOX_W / 2
        mid = (x1 + x2) / 2
        out.append(_line(x1, ROW - 6, x2 - 2, ROW - 6, FWD, "fwd"))
        out.append(_line(x2, ROW + 6, x1 + 2, ROW + 6, BWD, "bwd"))
        out.append(_text(mid, ROW - 14, f"{a}  {_shape(a)}"))
        grad = "d" + a
        if grad in GRADIENTS:
            lines = [_gradient_label(grad), _shape(grad)]
        else:  # P -> L: softmax and cross-entropy are differentiated together
            lines = ["dP is never formed:", "dZ = (P − Y)/n directly"]
        for k, line in enumerate(lines):
            out.append(_text(mid, ROW + 52 + 15 * k, line, color=BWD, size=12))
    # vertical edges: a parameter (or Y) into the node below it
    for p in ABOVE:
        px = x[p]
        y1, y2 = TOP + BOX_H / 2, ROW - BOX_H / 2
        out.append(_line(px - 6, y1, px - 6, y2 - 2, FWD, "fwd"))
        out.append(_text(px - 12, (y1 + y2) / 2 + 4, f"{p}  {_shape(p)}", anchor="end"))
        grad = "d" + p
        if grad in GRADIENTS:
            out.append(_line(px + 6, y2, px + 6, y1 + 2, BWD, "bwd"))
            formula = _pretty(FORMULAS[grad])
            head, _, penalty = formula.partition(" + ")
            label = [f"{grad} = {head}"] + ([f"+ {penalty}"] if penalty else [])
            label.append(_shape(grad))
            for k, line in enumerate(label):
                out.append(_text(px + 12, (y1 + y2) / 2 - 10 + 15 * k, line, color=BWD,
                                 anchor="start", size=12))
        out += _box(px, TOP, p, "targets" if p == "Y" else "parameter", caption_above=True)
    for name in CHAIN:
        if name == "X":
            caption = "input"
        elif name == "L":
            caption = "mean cross-entropy"
        else:
            caption = _pretty(FORMULAS[name])
        out += _box(x[name], ROW, name, caption)
    notes = [
        "dH3 = dZ and dH0 = dH1: an addition passes the gradient through (the Jacobian is an "
        "identity; no identity matrix is formed, the code returns the same array).",
        "db2 and db1 sum over the n rows the bias was copied to. Every product's gradient "
        "gets a transpose of the other factor, on the same side.",
        "The ReLU's gradient is an elementwise mask (⊙), not a matrix product; at H1 = 0 "
        "exactly the mask is 0.",
    ]
    for k, note in enumerate(notes):
        out.append(_text(LEFT - BOX_W / 2, 415 + 20 * k, note, anchor="start", size=12,
                         color="#333333"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the SVG (to the path given, or to docs/backprop_graph.svg)."""
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else OUT
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
