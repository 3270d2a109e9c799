"""docs/backprop.md against the code: its printouts, its numbers, its names, its picture."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import re
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastmlp
from fastmlp import __main__ as cli
from fastmlp import backprop, forward_backward, kernels, reference, solvers
from fastmlp.backprop import (
    FORMULAS,
    GRADIENTS,
    INPUTS,
    NODES,
    SHAPES,
    hand_example,
    hand_example_text,
)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "backprop.md"
BACKENDS = ["numba", "numpy"]
MARKER = "<!-- hand-example:"


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def fenced_block_after(text: str, anchor: str) -> str:
    """The body of the first fenced code block after ``anchor``."""
    start = text.index(anchor)
    match = re.compile(r"```[a-z]*\n(.*?)```", re.S).search(text, start)
    assert match, f"no code block after {anchor!r}"
    return match.group(1)


def doc_hand_example() -> str:
    return fenced_block_after(doc_text(), MARKER)


def parse_printout(text: str) -> dict:
    """Arrays of the hand example printout by name (the naive block is left out)."""
    arrays, name, rows = {}, None, []
    head = re.compile(r"^(\w+)(?: = .*?)?\s+\([\w, ]*\) = \([\d, ]*\)$")
    for line in text.split("for contrast")[0].splitlines():
        m = head.match(line)
        if m:
            if name:
                arrays[name] = np.array(rows, dtype=float)
            name, rows = m.group(1), []
        elif name and re.fullmatch(r"[\s\d.-]+", line) and line.strip():
            rows.append([float(v) for v in line.split()])
        elif name:
            arrays[name], name = np.array(rows, dtype=float), None
    if name:
        arrays[name] = np.array(rows, dtype=float)
    loss = float(re.search(r"^loss L = .* = ([\d.]+)$", text, re.M).group(1))
    return {k: (v[0] if len(SHAPES[k]) == 1 else v) for k, v in arrays.items()} | {"loss": loss}


# --------------------------------------------------------------- the hand example
@pytest.mark.parametrize("backend", BACKENDS)
def test_doc_shows_the_current_hand_example(backend):
    assert doc_hand_example() == hand_example_text(backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_example_numbers_match_forward_backward(backend):
    printed = parse_printout(doc_hand_example())
    inputs = hand_example()
    r = forward_backward(**inputs, backend=backend)
    assert set(printed) == {"loss", *INPUTS, *NODES, *GRADIENTS}
    for name in ("X", "W1", "b1", "W2", "b2"):  # whole numbers, printed exactly
        assert_array_equal(printed[name], inputs[name], err_msg=name)
    assert_array_equal(printed["Y"], np.eye(2)[inputs["y"]])
    for name in NODES + GRADIENTS:
        assert printed[name].shape == r[name].shape, name
        assert_allclose(printed[name], r[name], rtol=0, atol=5e-5, err_msg=name)
    assert printed["loss"] == pytest.approx(r.loss, abs=5e-5)
    # the sizes differ where the doc says they do: D != C, so X^T and W1^T show
    X = inputs["X"]
    assert X.shape == (2, 3) and inputs["W1"].shape == (3, 2) and inputs["W2"].shape == (2, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_example_by_hand(backend):
    """The closed forms of the doc's pencil-and-paper steps, section 12."""
    inputs = hand_example()
    r = forward_backward(**inputs, backend=backend)
    a = np.e / (2 * (1 + np.e))
    q = 0.25
    # forward: integers up to the logits (exact in floating point)
    assert_array_equal(r.H0, [[0, 2], [2, 0]])
    assert_array_equal(r.H1, [[-1, 2], [1, 0]])
    assert_array_equal(r.H2, [[0, 2], [1, 0]])
    assert_array_equal(r.Z, [[-3, -3], [0, -1]])
    assert_allclose(r.P, [[0.5, 0.5], [np.e / (1 + np.e), 1 / (1 + np.e)]], rtol=1e-14)
    assert r.loss == pytest.approx((np.log(2) + np.log1p(np.e)) / 2, rel=1e-14)
    # backward: multiples of 1/4 and of a = e / (2 (1 + e))
    expected = {
        "dZ": [[-q, q], [a, -a]],
        "db2": [-q + a, q - a],
        "dW2": [[a, -a], [-2 * q, 2 * q]],
        "dH2": [[-3 * q, -q], [3 * a, a]],
        "dH1": [[0, -q], [3 * a, 0]],
        "db1": [3 * a, -q],
        "dW1": [[-3 * a, -q], [3 * a, -2 * q], [0, -q]],
        "dX": [[-q, -q, q], [-3 * a, 3 * a, -3 * a]],
    }
    for name, value in expected.items():
        assert_allclose(r[name], value, rtol=1e-13, atol=1e-15, err_msg=name)
    assert r.dH3 is r.dZ and r.dH0 is r.dH1
    # the per-sample view: dW2 is the sum of the two outer products of section 9
    outer = [np.outer(r.H2[i], r.dH3[i]) for i in range(2)]
    assert_allclose(outer[0], [[0, 0], [-0.5, 0.5]], atol=1e-15)
    assert_allclose(outer[1], [[a, -a], [0, 0]], atol=1e-15)
    assert_allclose(outer[0] + outer[1], r.dW2, atol=1e-15)
    # the exact zero of H1: dH2 is a there, the ReLU's backward pass gives 0
    assert r.H1[1, 1] == 0 and r.dH2[1, 1] == pytest.approx(a) and r.dH1[1, 1] == 0
    # and a central difference across that kink gives the average of the two slopes, a/2
    Y = np.eye(2)[inputs["y"]]

    def loss_of_H1(H1):
        Z = reference.activation_forward(H1) @ inputs["W2"] + inputs["b2"]
        return reference.cross_entropy(Z, Y).mean()

    h = 1e-6
    up, down = r.H1.copy(), r.H1.copy()
    up[1, 1] += h
    down[1, 1] -= h
    assert (loss_of_H1(up) - loss_of_H1(down)) / (2 * h) == pytest.approx(a / 2, rel=1e-5)
    assert round(a, 4) == 0.3655 and round(a / 2, 4) == 0.1828  # the doc's rounded figures


def test_doc_code_example_prints_what_the_doc_shows():
    text = doc_text()
    anchor = "**The same numbers from the code.**"
    code = fenced_block_after(text, anchor)
    shown = fenced_block_after(text[text.index(anchor):], "Output:")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/backprop.md", "exec"), {})
    assert out.getvalue() == shown


def test_doc_gradcheck_run_is_current():
    """The gradcheck run of section 13, except the last digits of the errors (rounding)."""
    shown = fenced_block_after(doc_text(), "exceeds `--tol`. A real run:")
    assert shown.startswith("$ python -m fastmlp gradcheck\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main(["gradcheck"])
    assert status == 0
    errors = re.compile(r"\d\.\d\de-\d\d(?=  ok|$)")
    shown_lines = shown.splitlines()[1:]  # after the "$ python -m fastmlp gradcheck" line
    run_lines = out.getvalue().splitlines()
    assert len(shown_lines) == len(run_lines)
    for doc_line, run_line in zip(shown_lines, run_lines, strict=True):
        assert errors.sub("E", doc_line) == errors.sub("E", run_line)
        for found in errors.findall(doc_line) + errors.findall(run_line):
            assert float(found) < 1e-8, run_line


# ------------------------------------------------------------------- the picture
def _draw_graph():
    spec = importlib.util.spec_from_file_location("draw_graph", ROOT / "docs" / "draw_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_graph_svg_is_what_draw_graph_draws_today():
    svg = (ROOT / "docs" / "backprop_graph.svg").read_text(encoding="utf-8")
    assert svg == _draw_graph().render(), "run: python docs/draw_graph.py"
    for name in NODES + GRADIENTS + ("X", "W1", "b1", "W2", "b2", "Y"):
        assert f">{name}<" in svg or f">{name} " in svg, name
    assert "backprop_graph.svg" in doc_text()


def test_graph_tables_match_forward_backward(make_problem):
    """SHAPES and FORMULAS, which the picture and the printout show, describe the real graph."""
    assert set(FORMULAS) == set(NODES + GRADIENTS)
    assert set(SHAPES) == set(INPUTS + NODES + GRADIENTS)
    sizes = {"n": 5, "D": 3, "H": 4, "C": 2}  # all different, so a wrong shape shows
    p = make_problem(sizes["n"], sizes["D"], sizes["H"], sizes["C"])
    r = forward_backward(p.X, p.y, *p.params)
    arrays = dict(r) | {"X": p.X, "Y": p.Y, "W1": p.W1, "b1": p.b1, "W2": p.W2, "b2": p.b2}
    for name, symbolic in SHAPES.items():
        assert arrays[name].shape == tuple(sizes[s] for s in symbolic), name
    # each gradient has the shape of its variable: dA for A
    for g in GRADIENTS:
        assert SHAPES[g] == SHAPES[g[1:]]


# ---------------------------------------------------------------- the Jacobians
def _vec(A):
    return np.asarray(A, dtype=np.float64).reshape(-1, order="F")  # stack the columns


def _jacobian(f, A, h=1e-6):
    """Central-difference Jacobian of vec f(A) by vec A (column-major, as in the doc)."""
    A = np.array(A, dtype=np.float64)
    cols = []
    for k in range(A.size):
        idx = np.unravel_index(k, A.shape, order="F")
        up, down = A.copy(), A.copy()
        up[idx] += h
        down[idx] -= h
        cols.append((_vec(f(up)) - _vec(f(down))) / (2 * h))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jacobian_view_gives_the_same_gradients(make_problem, backend):
    """Section 10: each Kronecker form is the Jacobian, and Jᵀ vec(dB) is the gradient."""
    n, D, H, C = 3, 4, 5, 2
    p = make_problem(n, D, H, C, seed=11)
    r = forward_backward(p.X, p.y, *p.params, backend=backend)
    X, W1, b1, W2, b2 = p.X, p.W1, p.b1, p.W2, p.b2
    ones = np.ones((n, 1))
    I = np.eye  # noqa: E741
    H2 = r.H2
    table = [
        # (Jacobian by finite differences, Kronecker form, size, incoming gradient, result)
        (_jacobian(lambda V: X @ V, W1), np.kron(I(H), X), (n * H, D * H), r.dH0, r.dW1),
        (_jacobian(lambda V: V @ W1, X), np.kron(W1.T, I(n)), (n * H, n * D), r.dH0, r.dX),
        (_jacobian(lambda V: V + b1, r.H0), I(n * H), (n * H, n * H), r.dH1, r.dH0),
        (_jacobian(lambda v: r.H0 + v, b1), np.kron(I(H), ones), (n * H, H), r.dH1, r.db1),
        (_jacobian(lambda V: H2 @ V, W2), np.kron(I(C), H2), (n * C, H * C), r.dH3, r.dW2),
        (_jacobian(lambda V: V @ W2, H2), np.kron(W2.T, I(n)), (n * C, n * H), r.dH3, r.dH2),
        (_jacobian(lambda V: V + b2, r.H3), I(n * C), (n * C, n * C), r.dZ, r.dH3),
        (_jacobian(lambda v: r.H3 + v, b2), np.kron(I(C), ones), (n * C, C), r.dZ, r.db2),
    ]
    for k, (fd, kron, size, incoming, gradient) in enumerate(table):
        assert fd.shape == kron.shape == size, k
        assert_allclose(fd, kron, atol=1e-8, err_msg=f"row {k}")
        assert_allclose(kron.T @ _vec(incoming), _vec(gradient), atol=1e-12, err_msg=f"row {k}")
    # the ReLU: a diagonal Jacobian with the mask on its diagonal (no entry near the kink)
    assert np.abs(r.H1).min() > 1e-4
    relu = _jacobian(lambda V: reference.activation_forward(V), r.H1)
    assert_allclose(relu, np.diag(_vec(r.H1 > 0)), atol=1e-8)
    # the softmax: one C x C block diag(p) - p pᵀ per sample
    for i in range(n):
        block = _jacobian(lambda z: reference.softmax(z[None, :])[0], r.Z[i])
        p_i = r.P[i]
        assert_allclose(block, np.diag(p_i) - np.outer(p_i, p_i), atol=1e-8)


# ------------------------------------------------------- every name the doc uses
MODULES = {"fastmlp": fastmlp, "kernels": kernels, "solvers": solvers, "reference": reference,
           "backprop": backprop, "_jit": importlib.import_module("fastmlp._jit")}
TEST_DEFS = {
    m.group(1)
    for path in (ROOT / "tests").glob("test_*.py")
    for m in re.finditer(r"^def (test_\w+)\(", path.read_text(encoding="utf-8"), re.M)
}


def _gradcheck_options() -> set[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, cli.argparse._SubParsersAction))
    return {s for a in sub.choices["gradcheck"]._actions for s in a.option_strings}


def _resolve(dotted: str) -> bool:
    parts = dotted.split(".")
    if parts[0] == "fastmlp" and len(parts) > 1 and parts[1] in MODULES:
        parts = parts[1:]
    elif parts[0] == "fastmlp":
        parts = ["fastmlp", *parts[1:]]
    obj = MODULES.get(parts[0])
    if obj is None:
        return any(hasattr(m, dotted) for m in MODULES.values())
    for part in parts[1:]:
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def check_name(token: str) -> str | None:
    """None if the backticked ``token`` names something real, else why not."""
    graph = set(INPUTS + NODES + GRADIENTS)
    if "::" in token:
        path, test = token.split("::")
        file = ROOT / path
        if not file.is_file():
            return f"no file {path}"
        if not re.search(rf"^def {test}\(", file.read_text(encoding="utf-8"), re.M):
            return f"no def {test} in {path}"
        return None
    if re.fullmatch(r"[\w/]+\.py|[\w/]+/", token):
        return None if (ROOT / token).exists() else f"no path {token}"
    if re.fullmatch(r"test_\w+\*", token):
        return None if any(t.startswith(token[:-1]) for t in TEST_DEFS) else "no such tests"
    if re.fullmatch(r"test_\w+", token):
        return None if token in TEST_DEFS else f"no test named {token}"
    if re.fullmatch(r"\*?_\w+", token.lstrip("*")) and token.startswith(("*", "_")):
        suffix = token.lstrip("*")  # a family of kernels: *_blas, _serial
        return None if any(k.endswith(suffix) for k in vars(kernels)) else "no such kernels"
    if token.startswith("python -m fastmlp"):
        words = token.split()
        options = [w for w in words if w.startswith("--")]
        bad = [o for o in options if o not in _gradcheck_options()]
        return f"unknown options {bad}" if bad else None
    if token.startswith("--"):
        return None if token.split()[0] in _gradcheck_options() else f"no option {token}"
    if re.fullmatch(r"\w+=\w+", token):  # a keyword argument of forward_backward
        ok = token.split("=")[0] in inspect.signature(forward_backward).parameters
        return None if ok else f"forward_backward has no argument {token}"
    if token in graph:
        return None
    if token == "dP":  # named as absent: "there is no dP"
        return None if token not in GRADIENTS else "the doc says there is no dP"
    if token in reference.ACTIVATIONS or token in backprop.BACKENDS:
        return None
    if token == "MLPClassifier":
        return None if importlib.util.find_spec("sklearn.neural_network") else "no sklearn"
    if token in ("alpha", "sample_weight", "reg"):  # argument names
        ok = (token in inspect.signature(forward_backward).parameters
              or token in inspect.signature(getattr(kernels.sgd_update, "py_func",
                                                    kernels.sgd_update)).parameters)
        return None if ok else f"no argument {token}"
    m = re.fullmatch(r"([\w.]+?)(\(\))?", token)
    if m and re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*", m.group(1)):
        return None if _resolve(m.group(1)) else f"{token} is not in fastmlp"
    return None  # a code expression such as `dH3 is dZ`, checked by the tests that run it


def test_every_name_in_the_doc_exists():
    text = re.sub(r"```.*?```", "", doc_text(), flags=re.S)
    tokens = sorted(set(re.findall(r"`([^`\n]+)`", text)))
    assert len(tokens) > 50  # the parse found the doc's names
    problems = {t: why for t in tokens if (why := check_name(t))}
    assert not problems


def test_name_check_can_fail():
    for bogus in ("tests/test_backprop.py::test_nothing", "test_nothing_at_all", "relu_backwards",
                  "solvers._no_such_step", "--no-such-option", "blas_mode=True", "*_cuda"):
        assert check_name(bogus), bogus


def test_map_has_a_row_for_every_gradient_and_node():
    text = doc_text()
    section = text[text.index("## 15. Map"):text.index("## 16. References")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    first = {re.findall(r"`(\w+)`", row.split("|")[1])[0] for row in rows}
    named = {n for row in rows for n in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert set(GRADIENTS) <= first
    assert set(NODES) <= named
