"""Tests of the command line, ``python -m fastmlp ...``, each in a subprocess."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from fastmlp import __main__ as cli


def run(*args, cwd, timeout=180):
    """Run ``python -m fastmlp *args``; return (exit status, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "fastmlp", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_error(status, out, err, expected_status, *fragments):
    assert status == expected_status, (status, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastmlp")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """Train once on digits with --plot and --output; shared by predict/evaluate tests."""
    where = tmp_path_factory.mktemp("cli")
    status, out, err = run(
        "train", "--data", "digits", "--hidden", "16", "--epochs", "3", "--solver", "adam",
        "--lr", "0.01", "--early-stopping", "--output", "model.npz", "--plot", "curves.png",
        cwd=where,
    )
    return where, status, out, err


# ------------------------------------------------------------------------- train
def test_train_digits_saves_model_and_plot(digits_model):
    where, status, out, err = digits_model
    assert status == 0, err
    assert "Traceback" not in err
    # the estimators' progress display, on stderr: a plain line per epoch off a terminal
    assert len(re.findall(r"^epoch \d/3 \[[#.]{20}\] loss .* \| elapsed .*, ETA .*/.* \| "
                          r"val_accuracy [\d.]+ val_loss [\d.]+$", err, re.M)) == 3, err
    assert "\r" not in err
    assert re.search(r"^early stopping: restored the weights of epoch \d \(val_accuracy", err,
                     re.M)
    assert not re.search(r"^ *epoch \d", out, re.M)  # nothing of it on stdout
    assert "early stopping kept epoch" in out
    assert "test accuracy" in out and "model saved to model.npz" in out
    assert (where / "model.npz").is_file()
    assert (where / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_csv_with_string_labels_then_evaluate(tmp_path):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-2, 1, (40, 3)), rng.normal(2, 1, (40, 3))])
    labels = np.array(["left"] * 40 + ["right"] * 40)
    lines = ["a,b,c,side"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{s}" for r, s in zip(
        X, labels, strict=True)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    status, out, err = run("train", "--data", "d.csv", "--hidden", "8", "--epochs", "20",
                           "--solver", "adam", "--lr", "0.05", "--quiet", "-o", "m.npz",
                           cwd=tmp_path)
    assert status == 0, err
    assert "epoch " not in err and "  epoch " not in out  # --quiet
    assert "X_train (64, 3), X_test (16, 3)" in out
    status, out, err = run("evaluate", "-m", "m.npz", "--data", "d.csv", cwd=tmp_path)
    assert status == 0, err
    accuracy = float(out.split("accuracy: ")[1].split()[0])
    assert accuracy > 0.9  # two well separated blobs
    assert "left" in out and "right" in out


def test_train_errors(tmp_path):
    assert_one_line_error(*run("train", "--epochs", "0", cwd=tmp_path), 2,
                          "--epochs", "expected a positive integer")
    assert_one_line_error(*run("train", "--solver", "newton", cwd=tmp_path), 2,
                          "invalid choice: 'newton'")
    assert_one_line_error(*run("train", "--data", "missing.csv", cwd=tmp_path), 1,
                          "missing.csv: no such file")
    (tmp_path / "bad.csv").write_text("1,2,0\n3,oops,1\n")
    assert_one_line_error(*run("train", "--data", "bad.csv", cwd=tmp_path), 1,
                          "bad.csv", "features must be numbers")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(*run("train", "--data", "empty", cwd=tmp_path), 1,
                          "does not hold the Fashion-MNIST IDX files")


def test_plot_without_matplotlib_is_one_line(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    status = cli.main(["train", "--data", "digits", "--plot", str(tmp_path / "c.png")])
    out, err = capsys.readouterr()
    assert_one_line_error(status, out, err, 1, "--plot needs matplotlib")
    assert not (tmp_path / "c.png").exists()


# ---------------------------------------------------------------- predict, evaluate
def test_evaluate_prints_accuracy_report_confusion(digits_model):
    where = digits_model[0]
    status, out, err = run("evaluate", "--model", "model.npz", "--data", "digits", cwd=where)
    assert status == 0, err
    assert "data:  digits test split, 450 rows" in out
    assert 0 <= float(out.split("accuracy: ")[1].split()[0]) <= 1
    assert "precision" in out and "recall" in out and "macro avg" in out
    matrix = out.split("confusion matrix (rows: true label, columns: predicted)\n")[1]
    rows = matrix.strip().splitlines()[1:]
    assert len(rows) == 10
    assert sum(sum(int(v) for v in r.split()[1:]) for r in rows) == 450


def test_predict_stdout_and_file(digits_model, tmp_path):
    where = digits_model[0]
    status, out, err = run("predict", "-m", "model.npz", "--data", "digits", "--proba",
                           cwd=where)
    assert status == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "prediction," + ",".join(f"p_{c}" for c in range(10))
    assert len(lines) == 451
    probs = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-4)
    # rows of an unlabelled CSV with the model's 64 columns: predictions to a file
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (5, 64))
    (tmp_path / "x.csv").write_text("\n".join(",".join(f"{v:.3f}" for v in r) for r in X))
    status, out, err = run("predict", "-m", where / "model.npz", "--data", "x.csv",
                           "-o", "p.csv", cwd=tmp_path)
    assert status == 0, err
    written = (tmp_path / "p.csv").read_text().splitlines()
    assert written[0] == "prediction" and len(written) == 6
    assert all(0 <= int(v) <= 9 for v in written[1:])


def test_predict_evaluate_errors(digits_model, tmp_path):
    where = digits_model[0]
    assert_one_line_error(*run("evaluate", "-m", "nope.npz", "--data", "digits", cwd=where),
                          1, "nope.npz: no such model file")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 this is not really a zip")
    assert_one_line_error(*run("predict", "-m", "junk.npz", "--data", "digits", cwd=tmp_path),
                          1, "junk.npz: not a readable .npz archive")
    np.savez(tmp_path / "foreign.npz", W=np.zeros(3))
    assert_one_line_error(*run("evaluate", "-m", "foreign.npz", "--data", "digits",
                               cwd=tmp_path), 1, "foreign.npz", "no 'metadata' entry")
    (tmp_path / "narrow.csv").write_text("1,2,0\n3,4,1\n")
    assert_one_line_error(*run("evaluate", "-m", where / "model.npz", "--data", "narrow.csv",
                               cwd=tmp_path), 1, "the model expects 64 features, the data has 3")
    assert_one_line_error(*run("predict", "--data", "digits", cwd=tmp_path), 2,
                          "the following arguments are required: --model")


# ---------------------------------------------------------------------- gradcheck
def test_gradcheck_passes_and_lists_every_gradient(tmp_path):
    status, out, err = run("gradcheck", "--n", "4", "--d", "3", "--hidden", "5",
                           "--classes", "3", "--seed", "1", cwd=tmp_path)
    assert status == 0, err
    for name in ("dW1", "db1", "dW2", "db2", "dX", "dZ", "dH3", "dH2", "dH1", "dH0"):
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        analytic, numeric, error = (float(v) for v in row.split()[-4:-1])
        assert abs(analytic - numeric) <= 1e-6 * max(analytic, 1e-12)
        assert error <= 1e-6 and row.endswith("ok")
    assert "all gradients agree" in out


def test_gradcheck_exit_status_1_when_an_error_exceeds_tol(tmp_path):
    # float64 central differences agree to ~1e-9, so a tolerance of 1e-15 must fail
    status, out, err = run("gradcheck", "--tol", "1e-15", "--backend", "numpy", cwd=tmp_path)
    assert status == 1
    assert "FAIL" in out and "FAILED: largest relative error" in out
    assert "Traceback" not in err


def test_gradcheck_usage_error(tmp_path):
    assert_one_line_error(*run("gradcheck", "--classes", "1", cwd=tmp_path), 2,
                          "--classes", "expected an integer >= 2")


# -------------------------------------------------------------------------- bench
def test_bench_delegates_help(tmp_path):
    status, out, err = run("bench", "--help", cwd=tmp_path)
    assert status == 0, err
    assert "usage:" in out and "bench" in out


def test_bench_missing_module_is_one_line(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fastmlp.bench" else real(name, *a))
    status = cli.main(["bench"])
    out, err = capsys.readouterr()
    assert_one_line_error(status, out, err, 1, "fastmlp/bench.py is not available")


# --------------------------------------------------------------------------- demo
def test_demo_on_shipped_sample(tmp_path):
    status, out, err = run("demo", "--sample", "--max-train", "2000", "--epochs", "2",
                           "--numpy-epochs", "1", cwd=tmp_path, timeout=120)
    assert status == 0, err
    assert "Fashion-MNIST (sample shipped in datasets/)" in out
    assert "X_train (2000, 784), X_test (10000, 784), float32" in out
    assert len(re.findall(r"^epoch \d/2 \[", err, re.M)) == 2, err  # progress on stderr
    accuracy = float(out.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.6  # 10 classes; two epochs on 2,000 real images learn a lot
    fast = float(out.split("fastmlp:")[1].split()[0])
    slow = float(out.split("plain NumPy:")[1].split()[0])
    ratio = float(out.split("speed ratio: ")[1].split()[0])
    assert ratio == pytest.approx(slow / fast, rel=0.02, abs=0.006)
    verdict = "faster" if ratio >= 1 else "slower"
    assert f"x {verdict} per epoch than plain NumPy" in out


def test_no_subcommand_runs_demo(tmp_path):
    # options without a subcommand go to demo, as plain `python -m fastmlp` does
    status, out, err = run("--sample", "--max-train", "500", "--epochs", "1",
                           "--numpy-epochs", "0", cwd=tmp_path, timeout=120)
    assert status == 0, err
    assert out.startswith("fastmlp demo:") and "test accuracy:" in out
    assert "speed ratio" not in out


def test_help_and_unknown_subcommand(tmp_path):
    status, out, _ = run("--help", cwd=tmp_path)
    assert status == 0
    for name in cli.SUBCOMMANDS:
        assert name in out
    assert_one_line_error(*run("frobnicate", cwd=tmp_path), 2, "invalid choice: 'frobnicate'")
    assert_one_line_error(*run("demo", "--data-dir", tmp_path, cwd=tmp_path), 1,
                          "does not hold the Fashion-MNIST IDX files")
    assert_one_line_error(*run("demo", "--numpy-epochs", "-1", cwd=tmp_path), 2,
                          "--numpy-epochs", "expected an integer >= 0")


# ------------------------------------------------- gradcheck: activations, example
@pytest.mark.parametrize("activation", ["tanh", "logistic", "identity"])
def test_gradcheck_other_activations_and_labelled_columns(tmp_path, activation):
    status, out, err = run("gradcheck", "--activation", activation, "--backend", "numpy",
                           cwd=tmp_path)
    assert status == 0, err
    assert f"-> 4 {activation} -> 3 softmax" in out
    header = next(line for line in out.splitlines() if line.startswith("gradient shape"))
    assert header.split() == ["gradient", "shape", "|analytic|", "|finite", "diff|",
                              "rel.", "error", "result"]
    assert "relative error |a - f| / (|a| + |f|)" in out
    assert "all gradients agree" in out


def test_gradcheck_activation_changes_the_gradients(tmp_path):
    # the option reaches both the analytic pass and the finite differences
    norms = {}
    for activation in ("relu", "tanh"):
        status, out, err = run("gradcheck", "--activation", activation, cwd=tmp_path)
        assert status == 0, err
        row = next(line for line in out.splitlines() if line.startswith("dW1 "))
        norms[activation] = float(row.split()[-4])
    assert norms["relu"] != norms["tanh"]


def test_gradcheck_unknown_activation_is_a_usage_error(tmp_path):
    assert_one_line_error(*run("gradcheck", "--activation", "softplus", cwd=tmp_path), 2,
                          "--activation", "invalid choice: 'softplus'")


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_gradcheck_example_prints_the_docs_hand_example(tmp_path, backend):
    from fastmlp.backprop import hand_example_text

    status, out, err = run("gradcheck", "--example", "--backend", backend, cwd=tmp_path)
    assert status == 0, err
    assert out == hand_example_text(backend)
    assert "dW1 = X^T dH0" in out and "dH1 = dH2 * 1[H1 > 0]" in out


def test_gradcheck_help_describes_every_option(tmp_path):
    status, out, err = run("gradcheck", "--help", cwd=tmp_path)
    assert status == 0, err
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, cli.argparse._SubParsersAction))
    for action in sub.choices["gradcheck"]._actions:
        assert action.help, action.option_strings
    for option in ("--activation", "--example", "--seed", "--backend"):
        assert option in out


# ------------------------------------------------------ bad input: one line, no traceback
def blobs_csv(path, labels=("1", "2"), rows=40):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-2, 1, (rows, 3)), rng.normal(2, 1, (rows, 3))])
    y = [labels[0]] * rows + [labels[1]] * rows
    path.write_text("\n".join(f"{a:.3f},{b:.3f},{c:.3f},{t}"
                              for (a, b, c), t in zip(X, y, strict=True)) + "\n")
    return path


@pytest.fixture(scope="module")
def blobs_model(tmp_path_factory):
    """A model trained on two blobs labelled 1 and 2 (integers)."""
    where = tmp_path_factory.mktemp("blobs")
    blobs_csv(where / "d.csv")
    status, out, err = run("train", "--data", "d.csv", "--hidden", "8", "--epochs", "20",
                           "--lr", "0.05", "--quiet", "-o", "m.npz", cwd=where)
    assert status == 0, err
    return where


def test_csv_field_over_the_csv_limit_is_one_line(tmp_path):
    (tmp_path / "wide.csv").write_text("1,2,0\n" + "3" * 200_000 + ",4,1\n")
    assert_one_line_error(*run("train", "--data", "wide.csv", cwd=tmp_path), 1,
                          "wide.csv: line 2", "field larger than field limit (131072)")


def test_device_or_pipe_as_data_is_refused(tmp_path, blobs_model):
    # /dev/zero was read until MemoryError; a FIFO blocked the open forever
    assert_one_line_error(*run("train", "--data", "/dev/zero", cwd=tmp_path), 1,
                          "/dev/zero: a character device, expected a regular file")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.csv")
        assert_one_line_error(*run("predict", "-m", blobs_model / "m.npz", "--data",
                                   "pipe.csv", cwd=tmp_path, timeout=60), 1,
                              "pipe.csv: a pipe (FIFO), expected a regular file")
        assert_one_line_error(*run("evaluate", "-m", "pipe.csv", "--data", "digits",
                                   cwd=tmp_path, timeout=60), 1,
                              "pipe.csv: a pipe (FIFO), expected a regular file")


def test_tampered_model_is_one_line(tmp_path, blobs_model):
    with np.load(blobs_model / "m.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["metadata"]))
    meta["params"]["activation"] = "evil"  # loaded, then KeyError at predict
    np.savez(tmp_path / "evil.npz", **{**arrays, "metadata": np.array(json.dumps(meta))})
    assert_one_line_error(*run("predict", "-m", "evil.npz", "--data", blobs_model / "d.csv",
                               cwd=tmp_path), 1, "evil.npz: parameter activation='evil'")
    meta["params"]["activation"] = "relu"
    meta["fitted"]["n_outputs_"] = 0
    np.savez(tmp_path / "zero.npz", **{**arrays, "metadata": np.array(json.dumps(meta))})
    assert_one_line_error(*run("evaluate", "-m", "zero.npz", "--data", blobs_model / "d.csv",
                               cwd=tmp_path), 1, "zero.npz: fitted attribute n_outputs_=0")


@pytest.mark.parametrize("value", ["-1", "4294967296", "1.5", "abc"])
def test_bad_seed_is_a_usage_error(tmp_path, value):
    assert_one_line_error(*run("train", "--data", "digits", "--seed", value, cwd=tmp_path), 2,
                          "--seed", f"expected an integer from 0 to 4294967295, got '{value}'")


@pytest.mark.parametrize("value", ["0", "1.0", "1.5", "-0.2", "-3", "nan", "half"])
def test_bad_test_size_is_a_usage_error(tmp_path, value):
    assert_one_line_error(*run("train", "--data", "digits", "--test-size", value,
                               cwd=tmp_path), 2, "--test-size",
                          "expected a fraction between 0 and 1 (exclusive) or a positive "
                          f"number of rows, got '{value}'")


def test_test_size_as_a_count_of_rows(tmp_path):
    blobs_csv(tmp_path / "d.csv")
    status, out, err = run("train", "--data", "d.csv", "--test-size", "10", "--epochs", "1",
                           "--hidden", "4", "--quiet", cwd=tmp_path)
    assert status == 0, err
    assert "X_train (70, 3), X_test (10, 3)" in out  # 10 rows, not 10 x 80
    assert_one_line_error(*run("train", "--data", "d.csv", "--test-size", "80", cwd=tmp_path),
                          1, "d.csv: 80 rows are too few to split off a test set of 80")


def test_evaluate_string_labels_against_a_numeric_model(tmp_path, blobs_model):
    blobs_csv(tmp_path / "s.csv", labels=("cat", "dog"))
    assert_one_line_error(*run("evaluate", "-m", blobs_model / "m.npz", "--data", "s.csv",
                               cwd=tmp_path), 1,
                          "s.csv: none of its labels ('cat', 'dog') is a class of the model "
                          "(1, 2)")


def test_evaluate_float_classes_against_integer_labels(tmp_path):
    # a model trained in Python on labels 1.0 and 2.0; the CSV's labels read as 1 and 2
    from fastmlp import TwoLayerClassifier
    from fastmlp.model_io import save_model

    f = blobs_csv(tmp_path / "d.csv")
    data = np.loadtxt(f, delimiter=",")
    model = TwoLayerClassifier(hidden_units=8, max_iter=30, learning_rate_init=0.05,
                               random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data[:, :3], data[:, 3])
    save_model(model, tmp_path / "f.npz")
    status, out, err = run("evaluate", "-m", "f.npz", "--data", "d.csv", cwd=tmp_path)
    assert status == 0, err
    assert float(out.split("accuracy: ")[1].split()[0]) > 0.9  # was 0: "1" != "1.0"


@pytest.mark.parametrize("option", ["--plot", "--output"])
def test_output_into_a_missing_folder_refused_before_training(tmp_path, option):
    status, out, err = run("train", "--data", "digits", option, "nowhere/file", cwd=tmp_path)
    assert_one_line_error(status, out, err, 1, f"{option} nowhere/file: the folder nowhere "
                                               "does not exist")
    assert "training:" not in out  # refused before loading data and training
    (tmp_path / "folder").mkdir()
    assert_one_line_error(*run("train", "--data", "digits", option, "folder", cwd=tmp_path),
                          1, f"{option} folder: is a folder, expected a file name")


def test_usage_errors_name_one_program(tmp_path):
    status, out, err = run("predict", "--model", "m.npz", cwd=tmp_path)
    assert_one_line_error(status, out, err, 2, "--data")
    assert err.startswith("fastmlp: error:")  # not "fastmlp predict: error:"


def test_every_option_help_shows_its_default():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for name, sub in subparsers.choices.items():
        if name == "bench":  # its own parser, in fastmlp.bench
            continue
        formatter = sub._get_formatter()
        for action in sub._actions:
            if not action.option_strings or action.nargs == 0 or action.required:
                continue  # flags are off unless given; required options have no default
            text = formatter._get_help_string(action)
            assert "(default" in text, (name, action.option_strings, text)
            checked += 1
    assert checked > 30
    assert "rows of X, n (default: 6)" in subparsers.choices["gradcheck"].format_help()


def test_bench_report_imports_nothing_from_the_command_line():
    code = ("import sys, fastmlp.bench as b; b.build_parser().parse_args(['--repeats', '3']); "
            "print('fastmlp.__main__' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


class _ClosedPipe(io.StringIO):
    """A standard output whose reader went away (``fastmlp predict ... | head -1``)."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_closed_stdout_stops_quietly(blobs_model, monkeypatch, capsys):
    # (in-process: this sandbox's pipes do not fail writes once their reader exits)
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    status = cli.main(["predict", "-m", str(blobs_model / "m.npz"), "--data",
                       str(blobs_model / "d.csv")])
    monkeypatch.undo()
    assert status == 1
    assert capsys.readouterr().err == ""  # no traceback, no "Broken pipe" error line


def test_help_imports_no_numpy_and_knows_every_activation():
    # --help builds the parser only: no NumPy, no Numba, no scikit-learn
    import subprocess
    import sys

    from fastmlp import __main__ as cli
    from fastmlp import reference

    assert cli.ACTIVATIONS == reference.ACTIVATIONS
    code = ("import sys; from fastmlp.__main__ import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('numpy', 'numba', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ----------------------------------------------------------- the plot, class names
@pytest.fixture
def captured_plot(monkeypatch, tmp_path):
    """Run ``train`` in this process; keep what ``_plot`` was given and draw it."""
    seen = {}
    real = cli._plot

    def plot(model, path, title):
        seen.update(model=model, path=path, title=title)
        real(model, path, title)

    monkeypatch.setattr(cli, "_plot", plot)
    return seen


def test_plot_shows_validation_loss_restored_epoch_and_rows_trained_on(
        captured_plot, tmp_path, capsys):
    png = tmp_path / "c.png"
    status = cli.main(["train", "--data", "digits", "--hidden", "8", "--epochs", "6",
                       "--lr", "0.01", "--early-stopping", "--quiet", "--plot", str(png)])
    out, err = capsys.readouterr()
    assert status == 0, err
    model, title = captured_plot["model"], captured_plot["title"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # 1,347 training rows, 10% (rounded up) held out: the weights saw 1,212 per epoch
    per_epoch = model.t_ // model.n_iter_
    assert per_epoch == 1212 and model.t_ == per_epoch * model.n_iter_
    assert title.startswith("digits, 1212 rows trained on (135 of 1347 held out for "
                            "validation): adam, hidden 8, test accuracy ")
    fig = cli._curves_figure(model, title)
    loss_ax, score_ax = fig.axes
    lines = {line.get_label(): line for line in loss_ax.get_lines()}
    np.testing.assert_allclose(lines["validation (cross-entropy, no L2)"].get_ydata(),
                               model.validation_loss_curve_)
    np.testing.assert_allclose(lines["training (cross-entropy + L2)"].get_ydata(),
                               model.loss_curve_)
    restored = int(np.argmax(model.validation_scores_)) + 1
    for ax in (loss_ax, score_ax):
        mark = next(line for line in ax.get_lines() if line.get_label().startswith("restored"))
        assert mark.get_label() == f"restored epoch {restored}"
        assert list(mark.get_xdata()) == [restored, restored]
    assert score_ax.get_ylabel() == "validation accuracy"
    assert f"early stopping kept epoch {restored} " in out
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_plot_without_early_stopping_counts_every_row(captured_plot, tmp_path, capsys):
    status = cli.main(["train", "--data", "digits", "--hidden", "8", "--epochs", "2",
                       "--quiet", "--plot", str(tmp_path / "c.png")])
    assert status == 0, capsys.readouterr().err
    model, title = captured_plot["model"], captured_plot["title"]
    assert "digits, 1347 rows trained on: adam" in title and "held out" not in title
    fig = cli._curves_figure(model, title)
    assert len(fig.axes) == 1
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["training (cross-entropy + L2)"]  # no validation, nothing restored
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_evaluate_prints_fashion_mnist_class_names(tmp_path):
    from fastmlp.datasets import FASHION_CLASSES

    status, out, err = run("train", "--data", "fashion-mnist-sample", "--max-train", "500",
                           "--hidden", "8", "--epochs", "1", "--quiet", "-o", "f.npz",
                           cwd=tmp_path)
    assert status == 0, err
    status, out, err = run("evaluate", "-m", "f.npz", "--data", "fashion-mnist-sample",
                           cwd=tmp_path)
    assert status == 0, err
    names = [f"{i} {n}" for i, n in enumerate(FASHION_CLASSES)]
    assert "classes: " + ", ".join(names) in out
    assert "0 T-shirt/top" in names and "9 Ankle boot" in names
    report = out.split("accuracy: ")[1].split("confusion matrix")[0]
    for name in names:  # one row of the report per class, by name
        assert re.search(rf"^ *{re.escape(name)} +[\d.]+ +[\d.]+ +[\d.]+ +1000$", report,
                         re.M), name
    matrix = out.split("columns: predicted)\n")[1].strip().splitlines()
    assert matrix[0].split() == [str(i) for i in range(10)]
    for name, row in zip(names, matrix[1:], strict=True):
        assert row.strip().startswith(name)
        assert sum(int(v) for v in row[len(row) - len(row.lstrip()) + len(name):].split()) == 1000


def test_evaluate_digits_prints_no_class_names(digits_model):
    # digits' names are its labels: nothing to add
    status, out, err = run("evaluate", "-m", "model.npz", "--data", "digits",
                           cwd=digits_model[0])
    assert status == 0, err
    assert "classes:" not in out
    assert cli._display_names(np.arange(3), ("0", "1", "2")) is None
    assert cli._display_names(np.arange(2), ("cat", "dog")) == ["0 cat", "1 dog"]
    assert cli._display_names(np.array(["a", "b"]), ("cat", "dog")) is None


# ------------------------------------------------------------------------ regression
def regression_csv(path, rows=120, integer=False):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(rows, 3))
    y = 3 * X[:, 0] - 2 * X[:, 1] + 0.5 * X[:, 2] + 0.05 * rng.normal(size=rows)
    y = np.round(4 * y) if integer else y  # integer targets look like class labels
    path.write_text("a,b,c,target\n" + "\n".join(
        f"{a:.5f},{b:.5f},{c:.5f},{t:.0f}" if integer else f"{a:.5f},{b:.5f},{c:.5f},{t:.5f}"
        for (a, b, c), t in zip(X, y, strict=True)) + "\n")
    return X, y


def test_task_regression_saves_plots_evaluates_and_predicts(tmp_path):
    # integer targets: --task auto would train a classifier; --task regression does not
    regression_csv(tmp_path / "r.csv", integer=True)
    table = np.loadtxt(tmp_path / "r.csv", delimiter=",", skiprows=1)  # what the CLI reads
    X, y = table[:, :3].astype(np.float32), table[:, 3]
    status, out, err = run("train", "--data", "r.csv", "--task", "regression", "--hidden", "16",
                           "--epochs", "40", "--lr", "0.02", "--early-stopping",
                           "-o", "r.npz", "--plot", "r.png", cwd=tmp_path)
    assert status == 0, err
    assert "task: regression" not in out  # asked for, not detected
    assert "-> 1 output (regression)" in out and "model saved to r.npz" in out
    assert re.search(r"train R² [\d.-]+, test R² [\d.-]+", out)
    assert "| val_r2 " in err and "early stopping: restored the weights of epoch" in err
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from fastmlp import TwoLayerRegressor, load_model

    model = load_model(tmp_path / "r.npz")
    assert type(model) is TwoLayerRegressor and model.verbose is False
    status, out, err = run("evaluate", "-m", "r.npz", "--data", "r.csv", cwd=tmp_path)
    assert status == 0, err
    assert "TwoLayerRegressor, loss squared_error" in out and "r.csv, 120 rows" in out
    r2 = float(out.split("R²:")[1].split()[0])
    assert r2 == pytest.approx(model.score(X, y), abs=1e-4)
    assert r2 > 0.8  # a linear target, learned
    assert "MAE:" in out and "RMSE:" in out
    status, out, err = run("predict", "-m", "r.npz", "--data", "r.csv", cwd=tmp_path)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "prediction" and len(lines) == 121
    np.testing.assert_allclose([float(v) for v in lines[1:]],
                               model.predict(X), rtol=1e-6, atol=1e-6)
    assert_one_line_error(*run("predict", "-m", "r.npz", "--data", "r.csv", "--proba",
                               cwd=tmp_path), 1,
                          "--proba: r.npz holds a TwoLayerRegressor, which predicts numbers")


def test_task_auto_detects_float_targets_in_npz_and_csv(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(100, 4))
    np.savez(tmp_path / "r.npz", X=X, y=X @ np.array([1.0, 2.0, 0.0, -1.0]))
    status, out, err = run("train", "--data", "r.npz", "--hidden", "8", "--epochs", "3",
                           "--quiet", cwd=tmp_path)
    assert status == 0, err
    assert out.startswith("task: regression (the target has non-integer numbers")
    assert "X_train (80, 4), X_test (20, 4)" in out
    regression_csv(tmp_path / "r.csv")
    status, out, err = run("train", "--data", "r.csv", "--label-column", "target",
                           "--hidden", "8", "--epochs", "3", "--max-train", "50", "--quiet",
                           cwd=tmp_path)
    assert status == 0, err
    assert "task: regression" in out and "X_train (50, 3), X_test (24, 3)" in out


def test_task_classification_refuses_float_targets_in_one_line(tmp_path):
    regression_csv(tmp_path / "r.csv")
    assert_one_line_error(*run("train", "--data", "r.csv", "--task", "classification",
                               cwd=tmp_path), 1, "r.csv [label column 3]: labels must be "
                          "class labels", "got non-integer numbers (a regression target: "
                          "train with --task regression)")


def test_multi_output_regression_from_npz(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(90, 3))
    Y = np.column_stack([X[:, 0], X[:, 1] - X[:, 2]])
    np.savez(tmp_path / "m.npz", X_train=X[:70], y_train=Y[:70], X_test=X[70:], y_test=Y[70:])
    status, out, err = run("train", "--data", "m.npz", "--task", "regression", "--hidden", "8",
                           "--epochs", "5", "--quiet", "-o", "model.npz", cwd=tmp_path)
    assert status == 0, err
    assert "-> 2 outputs (regression)" in out
    status, out, err = run("predict", "-m", "model.npz", "--data", "m.npz", cwd=tmp_path)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "prediction_0,prediction_1" and len(lines) == 21  # the X_test rows
    status, out, err = run("evaluate", "-m", "model.npz", "--data", "m.npz", cwd=tmp_path)
    assert status == 0, err
    assert "-> 2 outputs, TwoLayerRegressor" in out and "(X_test, y_test), 20 rows" in out


# ------------------------------------------------------------ sparse files (issue 10)
def _sparse_problem(seed=0):
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    X = sp.random(300, 200, density=0.05, format="csr", random_state=seed)
    y = (np.asarray(X @ rng.normal(size=200)) > 0).astype(int)
    return X, y


def test_train_and_evaluate_on_svmlight_and_sparse_npz(tmp_path):
    import scipy.sparse as sp
    from sklearn.datasets import dump_svmlight_file

    X, y = _sparse_problem()
    dump_svmlight_file(X, y, str(tmp_path / "train.svm"))
    # save_npz's members plus the labels y: scipy.sparse.load_npz still reads it
    np.savez(tmp_path / "labelled.npz", data=X.data, indices=X.indices, indptr=X.indptr,
             shape=np.array(X.shape), format="csr", y=y)
    sp.save_npz(tmp_path / "rows.npz", X[:7])  # features only
    status, out, err = run("train", "--data", "train.svm", "--hidden", "8", "--epochs", "3",
                           "--quiet", "-o", "model.npz", cwd=tmp_path)
    assert status == 0, err
    assert "X_train (240, 200), X_test (60, 200)" in out
    status, out, err = run("evaluate", "-m", "model.npz", "--data", "labelled.npz",
                           cwd=tmp_path)
    assert status == 0, err
    assert "300 rows" in out
    status, out, err = run("predict", "-m", "model.npz", "--data", "rows.npz", cwd=tmp_path)
    assert status == 0, err
    lines = out.split()
    assert lines[0] == "prediction" and len(lines) == 8 and set(lines[1:]) <= {"0", "1"}
    # an svmlight file whose rows do not use the last features is as wide as the model
    dump_svmlight_file(X[:, :150], y, str(tmp_path / "narrow.svm"))
    status, out, err = run("evaluate", "-m", "model.npz", "--data", "narrow.svm", cwd=tmp_path)
    assert status == 0, err


def test_malformed_sparse_files_one_line_error(tmp_path):
    import scipy.sparse as sp

    X, y = _sparse_problem()
    bad = X.copy()
    bad.indices[3] = 10_000  # past the 200 columns
    sp.save_npz(tmp_path / "bad.npz", bad)
    (tmp_path / "bad.svm").write_text("1 3:0.5 nonsense\n0 2:1\n")
    (tmp_path / "nan.svm").write_text("1 3:nan\n0 2:1\n")
    for name in ("bad.npz", "bad.svm", "nan.svm"):
        status, out, err = run("train", "--data", name, "--epochs", "1", cwd=tmp_path)
        assert status != 0 and name in err, (name, err)
        assert "Traceback" not in err
