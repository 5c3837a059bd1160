"""``python -m derive train``."""

from __future__ import annotations

import numpy as np
import pytest

from derive import _build, cli, files


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["train", *args, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_trains_a_csv_file_and_saves_params_and_a_plot(capsys, tmp_path):
    # iris's shape (4 features, 3 classes): derive train proves the network once per process
    # for this test and test_outputs_go_through_the_write_path (accuracy over seeds 0-7: 0.89-1)
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, 90)
    x = rng.standard_normal((90, 4)) + np.eye(3, 4)[label] * 4
    table = np.column_stack([label, x])
    data = tmp_path / "blobs.csv"
    np.savetxt(data, table, delimiter=",", header="kind,a,b,c,d", comments="")
    code, out, err = run(
        capsys,
        *("--data", str(data), "--label-column", "kind", "--layers", "4,5,3", "--epochs", "15"),
        *("--lr", "0.01", "--save", str(tmp_path / "p.npz"), "--plot", str(tmp_path / "c.svg")),
    )
    assert code == 0, err
    assert "72 train / 18 test" in out  # stratified 80/20
    test_accuracy = float(out.split("test : loss ")[1].split("accuracy ")[1].split()[0])
    assert test_accuracy > 0.8
    assert "trained 15 epochs in" in out
    # the arguments derive train passes: lru_cache keys on them as given, so this is its module
    module = _build.network_module("4,5,3", "relu", "softmax_cross_entropy", False)
    params, optimizer = module.load_checkpoint(str(tmp_path / "p.npz"))
    assert params[0][0].shape == (4, 5)
    assert optimizer.name == "adam" and optimizer.steps == 15 * 3
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")


def test_npz_regression_data(capsys, tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 3))
    np.savez(tmp_path / "d.npz", x=x, y=x @ np.array([1.0, 2.0, -1.0]))
    code, out, err = run(
        capsys, "--data", str(tmp_path / "d.npz"), "--layers", "3,4,1", "--loss", "mse"
    )
    assert code == 0, err
    assert "R² " in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "64,32,9"], "it has 64 features and 10 classes; use --layers 64,32,10"),
        (["--layers", "60,10"], "use --layers 64,10"),
        (["--layers", "64,10", "--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
        (["--layers", "64,10", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--layers", "64,10", "--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--layers", "64,10", "--optimizer", "adagrad"], "--optimizer 'adagrad' is unknown"),
        (["--layers", "64,10", "--plot", "c.pdf"], "--plot 'c.pdf' must end in .png or .svg"),
        (["--layers", "64,10", "--activation", "relux"], "relux"),
        (["--layers", "64,,10"], "layers"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(capsys, args, message):
    code, out, err = run(capsys, "--data", "digits", *args)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert "derived and proved" not in out  # checked before any work


def test_missing_data_file(capsys, tmp_path):
    code, _, err = run(capsys, "--data", str(tmp_path / "none.csv"), "--layers", "2,2")
    assert code == 2 and "does not exist" in err


def test_the_derive_command_still_works(capsys, tmp_path):
    assert cli.main(["--layers", "2,2", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "mlp_2_2.py").is_file()


def test_outputs_go_through_the_write_path(capsys, tmp_path, monkeypatch):
    """--save and --plot carry derive's marker; a file derive did not write is refused
    before any training, and a rerun of the same run leaves identical files alone."""
    monkeypatch.chdir(tmp_path)
    args = ("--data", "iris", "--layers", "4,5,3", "--epochs", "2", "--save", "p.npz")
    code, out, err = run(capsys, *args, "--plot", "c.png")
    assert code == 0, err
    for name in ("p.npz", "c.png"):
        recorded = files.recorded_spec(files._marker_text(tmp_path / name))
        assert recorded is not None and recorded.startswith("python -m derive train --layers 4,5,3")
    code, out, err = run(capsys, *args, "--plot", "c.png")
    assert code == 0 and "unchanged p.npz" in out and "unchanged c.png" in out, err
    (tmp_path / "mine.png").write_bytes(b"\x89PNG\r\n\x1a\nmine")
    code, out, err = run(capsys, *args, "--plot", "mine.png")
    assert code == 2 and "not written by derive" in err and "trained" not in out
    assert (tmp_path / "mine.png").read_bytes() == b"\x89PNG\r\n\x1a\nmine"


@pytest.mark.slow
def test_trains_a_network_with_layer_kinds(capsys, tmp_path, monkeypatch):
    """derive train with norms, a residual block and dropout; the final loss is inference's."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(
        capsys,
        *("--data", "digits", "--layers", "64,32,bn,32+res,ln,drop:0.1,10"),
        *("--activation", "tanh", "--epochs", "5", "--seed", "0"),
    )
    assert code == 0, err
    test_line = next(line for line in out.splitlines() if line.startswith("test"))
    assert float(test_line.rpartition("accuracy ")[2]) > 0.8
