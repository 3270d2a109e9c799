"""A failed write never destroys the file it was replacing (``fastmlp._files.atomic_write``).

Every file the package writes (``save_model``, the command line's ``-o``, ``predict -o``,
``--plot``, the bench's ``--json``/``--png``, datasets' IDX files) goes to a temporary
beside the target, fsynced, then renamed over it. Here: a full disk (a 200 KB tmpfs), a
read-only folder (the tmpfs remounted read-only: root ignores permission bits), and
SIGINT/SIGKILL of a child process in the middle of a slowed write. Each time the previous
file must be intact byte for byte and no temporary left (except after SIGKILL, which
nothing can clean up: the temporary stays, the target is intact).
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import types
import warnings

import numpy as np
import pytest

from fastmlp import __main__ as cli
from fastmlp import bench, datasets
from fastmlp._files import TEMP_SUFFIX, atomic_write
from fastmlp.classifier import TwoLayerClassifier
from fastmlp.model_io import load_model, save_model


def temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX))


def model(hidden, D=64, seed=0):
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: one epoch
        return TwoLayerClassifier(hidden_units=hidden, max_iter=1, random_state=0).fit(
            rng.random((30, D)), np.arange(30) % 3)


# ---------------------------------------------------------------- the helper itself
def test_atomic_write_replaces_the_file_and_keeps_its_mode(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    with atomic_write(path) as f:
        f.write(b"new")
        assert path.read_bytes() == b"old"  # not yet replaced
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert temporaries(tmp_path) == []


def test_atomic_write_gives_a_new_file_the_mode_open_would(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "new.txt", "w") as f:
            f.write("text")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
    assert (tmp_path / "new.txt").read_text() == "text"


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   KeyboardInterrupt(), ValueError("bad")])
def test_a_failure_inside_the_block_keeps_the_old_file(tmp_path, error):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old content")
    with pytest.raises(type(error)):
        with atomic_write(path) as f:
            f.write(b"half")
            raise error
    assert path.read_bytes() == b"old content"
    assert temporaries(tmp_path) == []


def test_atomic_write_writes_through_a_symbolic_link(tmp_path):
    (tmp_path / "real.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to("real.txt")
    with atomic_write(tmp_path / "link.txt", "w") as f:
        f.write("new")
    assert (tmp_path / "link.txt").is_symlink()
    assert (tmp_path / "real.txt").read_text() == "new"


# ------------------------------------------------------------ a full, read-only disk
@pytest.fixture
def small_disk(tmp_path, tmpfs):
    """A 200 KB tmpfs at ``tmp_path / 'disk'``, unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    return tmpfs(where, "200k")


def fill(folder, leave=4096):
    """Fill the file system of ``folder`` but ``leave`` bytes (a filler file)."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))


def test_saving_a_large_model_over_a_small_one_on_a_full_disk(small_disk):
    path = small_disk.path / "model.npz"
    save_model(model(3), path)
    old = path.read_bytes()
    with pytest.raises(OSError) as info:
        save_model(model(1000), path)  # W1 alone: 64 x 1000 float32, 256 KB
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == old
    assert load_model(path).coefs_[0].shape == (64, 3)
    assert temporaries(small_disk.path) == []


def test_saving_into_a_read_only_folder(small_disk):
    path = small_disk.path / "model.npz"
    save_model(model(3), path)
    old = path.read_bytes()
    small_disk.remount("ro")
    with pytest.raises(OSError) as info:
        save_model(model(5), path)
    assert info.value.errno == errno.EROFS
    assert path.read_bytes() == old
    assert temporaries(small_disk.path) == []


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastmlp", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def assert_failed_cleanly(proc, *fragments):
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def test_cli_outputs_on_a_full_disk(small_disk, tmp_path):
    disk = small_disk.path
    # --output: a model too large for the disk over a small one
    small = ("train", "--data", "digits", "--max-train", "200", "--epochs", "1")
    proc = run_cli(*small, "--hidden", "4", "-o", disk / "model.npz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    old_model = (disk / "model.npz").read_bytes()
    proc = run_cli(*small, "--hidden", "1000", "-o", disk / "model.npz", cwd=tmp_path)
    assert_failed_cleanly(proc, "No space left on device")
    assert (disk / "model.npz").read_bytes() == old_model
    # predict -o and --plot with the disk all but full
    (disk / "predictions.csv").write_text("prediction\nold\n")
    (disk / "curves.png").write_bytes(b"old png")
    fill(disk)
    proc = run_cli("predict", "-m", disk / "model.npz", "--data", "digits", "--proba",
                   "-o", disk / "predictions.csv", cwd=tmp_path)
    assert_failed_cleanly(proc, "No space left on device")
    proc = run_cli(*small, "--hidden", "4", "--plot", disk / "curves.png", cwd=tmp_path)
    assert_failed_cleanly(proc, "No space left on device")
    assert (disk / "predictions.csv").read_text() == "prediction\nold\n"
    assert (disk / "curves.png").read_bytes() == b"old png"
    assert temporaries(disk) == []


def test_bench_json_and_png_on_a_full_disk(small_disk, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    disk = small_disk.path
    rows = [{"workload": "digits", "dtype": "float32", "implementation": f"fastmlp {i}",
             "median_s": 0.01 * (i + 1)} for i in range(3)]
    rep = types.SimpleNamespace(epochs=rows, epoch_median=lambda *a: None,
                                to_json=lambda: {"epochs": rows, "pad": "x" * 300_000})
    monkeypatch.setattr(bench, "run", lambda args, command: rep)
    monkeypatch.setattr(bench, "format_report", lambda rep: "report")
    (disk / "bench.json").write_text('{"old": 1}')
    (disk / "bench.png").write_bytes(b"old png")
    with pytest.raises(OSError) as info:
        bench.main(["--json", str(disk / "bench.json")])
    assert info.value.errno == errno.ENOSPC
    fill(disk)
    with pytest.raises(OSError) as info:
        bench.main(["--png", str(disk / "bench.png")])
    assert info.value.errno == errno.ENOSPC
    assert (disk / "bench.json").read_text() == '{"old": 1}'
    assert (disk / "bench.png").read_bytes() == b"old png"
    assert temporaries(disk) == []
    capsys.readouterr()


def test_write_idx_on_a_full_disk(small_disk):
    path = small_disk.path / "images-idx3-ubyte"
    datasets.write_idx(path, np.zeros((2, 3, 3), np.uint8))
    old = path.read_bytes()
    with pytest.raises(OSError):
        datasets.write_idx(path, np.zeros((300, 28, 28), np.uint8))  # 235 KB
    assert path.read_bytes() == old
    assert temporaries(small_disk.path) == []


# ------------------------------------------------------------------ signals mid-write
SLOW_SAVEZ = '''
import io, sys, time
import numpy as np
real_savez = np.savez

def slow_savez(file, *args, **kwds):
    # the archive's bytes reach the file 4 KB at a time, 5 ms apart: a window for a signal
    buf = io.BytesIO()
    real_savez(buf, *args, **kwds)
    data = buf.getvalue()
    for i in range(0, len(data), 4096):
        file.write(data[i:i + 4096])
        file.flush()
        if i == 4096:
            print("WRITING", flush=True)
        time.sleep(0.005)

np.savez = slow_savez
'''


def signal_mid_write(code, sig, cwd):
    """Run ``SLOW_SAVEZ + code`` in a child; send ``sig`` once it prints WRITING."""
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SAVEZ + textwrap.dedent(code)],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "WRITING":
                proc.send_signal(sig)
                break
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_signal_while_saving_a_model_keeps_the_old_file(tmp_path, sig):
    path = tmp_path / "model.npz"
    save_model(model(3), path)
    old = path.read_bytes()
    rc, err = signal_mid_write(f"""
        import warnings
        warnings.simplefilter("ignore")
        from fastmlp import TwoLayerClassifier
        from fastmlp.model_io import save_model
        rng = np.random.default_rng(0)
        m = TwoLayerClassifier(hidden_units=600, max_iter=1).fit(rng.random((30, 64)),
                                                                 np.arange(30) % 3)
        save_model(m, {str(path)!r})  # 300 KB: 75 slowed writes
        print("FINISHED", flush=True)
    """, sig, tmp_path)
    if sig == signal.SIGINT:
        # Python ends an uncaught KeyboardInterrupt by SIGINT itself
        assert rc == -signal.SIGINT and "KeyboardInterrupt" in err, (rc, err)
        assert temporaries(tmp_path) == []
    else:
        assert rc == -signal.SIGKILL, (rc, err)
        assert len(temporaries(tmp_path)) <= 1  # nothing can remove it after a kill
    assert path.read_bytes() == old
    assert load_model(path).coefs_[0].shape == (64, 3)


def test_ctrl_c_while_the_cli_saves_a_model_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.npz"
    save_model(model(3), path)
    old = path.read_bytes()
    rc, err = signal_mid_write(f"""
        from fastmlp import __main__ as cli
        sys.exit(cli.main(["train", "--data", "digits", "--max-train", "200", "--hidden",
                           "600", "--epochs", "1", "-o", {str(path)!r}]))
    """, signal.SIGINT, tmp_path)
    assert rc == 130 and err.strip().splitlines()[-1] == "fastmlp: error: interrupted", err
    assert path.read_bytes() == old
    assert temporaries(tmp_path) == []


def test_the_cli_reports_an_unwritable_output_in_one_line(tmp_path, capsys, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "p.csv").write_text("old\n")
    save_model(model(3, D=64), tmp_path / "m.npz")
    import fastmlp._files as files

    monkeypatch.setattr(files.os, "fsync", no_space)
    status = cli.main(["predict", "-m", str(tmp_path / "m.npz"), "--data", "digits",
                       "-o", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert status == 1 and "No space left on device" in err and len(err.splitlines()) == 1
    assert (tmp_path / "p.csv").read_text() == "old\n"
    assert temporaries(tmp_path) == []
