"""Bad input, faults and hostile input: clear errors, nothing lost, nothing executed."""

from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from helpers import catalog_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from derive import cli, files

ROOT = Path(__file__).resolve().parent.parent


# --- files: atomic, never clobbering ------------------------------------------


def test_interrupted_write_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch):
    target = tmp_path / "mlp.py"
    target.write_text(files.HEADER + " --layers 4,3`\nold = 1\n")
    real_fdopen = os.fdopen

    class Dies:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, text):
            self.handle.write(text[: len(text) // 2])  # half the module, then the process "dies"
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Dies(real_fdopen(fd, *a, **k)))
    with pytest.raises(KeyboardInterrupt):
        files.write_generated(target, files.HEADER + " --layers 4,3`\n" + "x = 2\n" * 1000)
    assert target.read_text() == files.HEADER + " --layers 4,3`\nold = 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["mlp.py"]


def test_failed_rename_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "mlp.py"
    target.write_text(files.HEADER + "`\nold\n")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        files.write_generated(target, files.HEADER + "`\nnew\n")
    assert target.read_text() == files.HEADER + "`\nold\n"
    assert [p.name for p in tmp_path.iterdir()] == ["mlp.py"]


def test_only_derives_own_files_are_overwritten(tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text("print('hand written')\n")
    with pytest.raises(files.Refused, match="not written by derive"):
        files.write_generated(mine, files.HEADER + "`\n")
    assert mine.read_text() == "print('hand written')\n"
    assert files.write_generated(mine, files.HEADER + "`\n", force=True)
    assert not files.write_generated(mine, files.HEADER + "`\n")  # unchanged: not rewritten


def test_out_below_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code = cli.main(["--layers", "4,3", "--out", str(tmp_path / "afile" / "sub")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("derive: error:")
    assert (tmp_path / "afile").read_text() == "x"


# --- injection: nothing from the command line becomes code ----------------------


def test_derive_never_evaluates_text():
    builtins = {"eval", "exec", "compile", "__import__", "sympify", "parse_expr"}
    methods = {"sympify", "parse_expr", "S", "eval", "exec"}
    for path in (ROOT / "derive").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name):
                    assert func.id not in builtins, f"{path.name}:{node.lineno} calls {func.id}"
                if isinstance(func, ast.Attribute):
                    assert func.attr not in methods, f"{path.name}:{node.lineno} calls {func.attr}"


def test_jinja_environment_is_strict():
    import jinja2

    from derive.backends.numpy import module as numpy_module

    env = numpy_module._environment()
    assert env.undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()


# --- the generated module at run time -------------------------------------------


@pytest.fixture(scope="module")
def mlp():
    return catalog_module("5,3,7,1", "tanh", "l2")  # rendered once: no test changes the module


def test_save_and_load_params_round_trip(mlp, tmp_path):
    params = mlp.init_params(seed=1, dtype=np.float32)
    mlp.save_params(str(tmp_path / "p.npz"), params)
    loaded = mlp.load_params(str(tmp_path / "p.npz"))
    for (w, b), (w2, b2) in zip(params, loaded, strict=True):
        assert w2.dtype == np.float32 and np.array_equal(w, w2) and np.array_equal(b, b2)


def test_pickled_params_are_refused(mlp, tmp_path):
    evil = tmp_path / "evil.npz"
    arrays = _arrays(mlp)
    arrays["W1"] = np.array([object()], dtype=object)
    np.savez(evil, sizes=np.array(mlp.SIZES), **arrays)
    with pytest.raises(ValueError, match="cannot read params"):
        mlp.load_params(str(evil))
    raw = tmp_path / "raw.npy"
    raw.write_bytes(pickle.dumps({"W1": 1}))
    with pytest.raises(ValueError, match="cannot read params"):
        mlp.load_params(str(raw))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zip file at all", "cannot read params"),
        (b"", "cannot read params"),
    ],
)
def test_malformed_params_files_are_refused(mlp, tmp_path, content, message):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        mlp.load_params(str(bad))


def test_params_of_another_network_are_refused(mlp, make_module, tmp_path):
    other = make_module("5,3")
    other.save_params(str(tmp_path / "o.npz"), other.init_params(seed=0))
    with pytest.raises(ValueError, match="lacks"):
        mlp.load_params(str(tmp_path / "o.npz"))
    np.savez(tmp_path / "wrong_sizes.npz", sizes=np.array([5, 3, 7, 2]), **_arrays(mlp))
    with pytest.raises(ValueError, match=r"widths \(5, 3, 7, 2\)"):
        mlp.load_params(str(tmp_path / "wrong_sizes.npz"))


def _arrays(mlp):
    out = {}
    for layer, (w, b) in enumerate(mlp.init_params(seed=0), start=1):
        out[f"W{layer}"], out[f"b{layer}"] = w, b
    return out


def test_check_finite_raises_and_default_propagates(mlp):
    params = mlp.init_params(seed=0)
    x, y = np.ones((2, 5)), np.ones((2, 1))
    x[1, 2] = np.inf
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        mlp.backprop(params, x, y, check_finite=True)
    params[1][0][0, 0] = np.nan
    with pytest.raises(ValueError, match="W2 contains NaN or inf"):
        mlp.backprop(params, np.ones((2, 5)), y, check_finite=True)
    value, _ = mlp.backprop(params, np.ones((2, 5)), y)
    assert np.isnan(value)


def test_non_array_params_are_a_type_error(mlp):
    params = mlp.init_params(seed=0)
    params[0] = (params[0][0].tolist(), params[0][1])
    with pytest.raises(TypeError, match="W1 must be a numpy array, got list"):
        mlp.backprop(params, np.ones((2, 5)), np.ones((2, 1)))


# --- fuzzing the command line ---------------------------------------------------

# Every character but the surrogates (category Cs), which are exactly what UTF-8 cannot
# encode; st.characters(codec="utf-8") would draw the same set but first scans all 1.1 million
# code points per fresh .hypothesis folder (3-11 CPU-s, every CI run).
junk = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)


@st.composite
def invalid_layers(draw):
    parts = draw(st.lists(junk, min_size=1, max_size=5))
    text = ",".join(parts)
    ok = len(parts) >= 2 and all(
        p.strip().isascii() and p.strip().isdigit() and 0 < int(p) <= 10**5 for p in parts
    )
    if ok:
        text += ",x"
    return text


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    layers=invalid_layers(),
    extra=st.lists(st.sampled_from(["--bogus", "--name", "--loss", "-x"]), max_size=2),
)
def test_invalid_command_lines_exit_2_without_traceback_or_files(tmp_path, capsys, layers, extra):
    before = sorted(tmp_path.rglob("*"))
    code = cli.main(["--layers", layers, "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and err.startswith("derive: error:") and err.count("\n") == 1
    assert sorted(tmp_path.rglob("*")) == before


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=junk.filter(lambda s: not (s.isidentifier() and s.isascii())))
def test_invalid_module_names_exit_2(tmp_path, capsys, name):
    code = cli.main(["--layers", "4,3", "--name", name, "--out", str(tmp_path / "o")])
    assert code == 2 and not (tmp_path / "o").exists()
    err = capsys.readouterr().err  # a name like "-0" reads as an option: argparse says so
    assert err.startswith(("derive: error: --name", "derive: error: argument --name"))
