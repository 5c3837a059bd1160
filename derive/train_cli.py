"""``python -m derive train``: derive and prove a network for a data set, then train it.

Everything the command line says is checked before any work (widths against
the data, hyperparameters, output paths); bad usage prints one line and
exits 2.  scikit-learn (bundled data sets), tqdm (progress) and matplotlib
(``--plot``) are the optional ``train`` extra, imported only when used.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from . import _build, files, naming, spec

DATASETS = {
    "digits": "load_digits",
    "iris": "load_iris",
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
    "diabetes": "load_diabetes",
}
REGRESSION_SETS = {"diabetes"}
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
CLASSIFICATION_LOSSES = {"softmax_cross_entropy", "sigmoid_binary_cross_entropy"}


class UsageError(Exception):
    """Bad usage: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m derive train",
        description="Derive and prove a network, then train it on a data set.",
    )
    p.add_argument(
        "--data", required=True, help=f"{', '.join(DATASETS)}, or a .npz (x, y) or .csv file"
    )
    p.add_argument("--label-column", help="the .csv column holding the labels (default: the last)")
    p.add_argument(
        "--layers", required=True, help="layer widths n0,...,nL (n0 = features, nL = classes)"
    )
    p.add_argument("--activation", default="relu", help="hidden activation(s) (default relu)")
    p.add_argument("--loss", help="default: softmax_cross_entropy, or l2 for regression data")
    p.add_argument("--optimizer", default="adam", help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr", type=float, help="learning rate (default: the optimizer's)")
    p.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        help="the optimizer's weight decay on W (default 0)",
    )
    p.add_argument(
        "--l2",
        type=float,
        default=0.0,
        metavar="LAMBDA",
        help="the derived L2 penalty λ/2 Σ‖W_l‖² in the objective (derive --l2); default 0",
    )
    p.add_argument("--epochs", type=int, default=50, help="epochs (default 50)")
    p.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed for split, init and shuffling")
    p.add_argument("--test-size", type=float, default=0.2, help="test fraction (default 0.2)")
    p.add_argument(
        "--scale",
        choices=("standard", "minmax", "none"),
        default="standard",
        help="input scaling fitted on the training split (default standard)",
    )
    p.add_argument("--save", metavar="PARAMS.npz", help="write the trained params and optimizer")
    p.add_argument("--plot", metavar="CURVE.png|.svg", help="plot loss and accuracy per epoch")
    p.add_argument(
        "--force", action="store_true", help="replace a --save or --plot file derive did not write"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _check_hyperparameters(args: argparse.Namespace) -> None:
    if args.optimizer not in OPTIMIZERS:
        raise UsageError(
            f"--optimizer {args.optimizer!r} is unknown; choose one of {', '.join(OPTIMIZERS)}"
        )
    if args.lr is not None and not (0 < args.lr < float("inf")):
        raise UsageError(f"--lr must be a finite number > 0, got {args.lr}")
    if not (0 <= args.weight_decay < float("inf")):
        raise UsageError(f"--weight-decay must be a finite number >= 0, got {args.weight_decay}")
    if not (0 <= args.l2 < float("inf")):
        raise UsageError(f"--l2 must be a finite number >= 0, got {args.l2}")
    if args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if not 0 < args.test_size < 1:
        raise UsageError(f"--test-size must be between 0 and 1, got {args.test_size}")
    for flag, value, suffixes in (
        ("--save", args.save, (".npz",)),
        ("--plot", args.plot, (".png", ".svg")),
    ):
        if value is None:
            continue
        path = Path(value)
        if path.suffix.lower() not in suffixes:
            raise UsageError(f"{flag} {value!r} must end in {' or '.join(suffixes)}")
        if path.is_dir() or not path.parent.is_dir():
            raise UsageError(f"{flag} {value!r}: the folder {str(path.parent)!r} does not exist")


def load_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y, description) for ``--data``."""
    name = args.data
    if name in DATASETS:
        try:
            from sklearn import datasets
        except ImportError as err:
            raise UsageError(
                f"--data {name} needs scikit-learn: pip install 'derive[train]'"
            ) from err
        x, y = getattr(datasets, DATASETS[name])(return_X_y=True)
        return np.asarray(x, float), np.asarray(y), name
    path = Path(name)
    if path.suffix.lower() not in (".npz", ".csv"):
        raise UsageError(
            f"--data {name!r} is neither a bundled set ({', '.join(DATASETS)}) nor a .npz or .csv"
        )
    if not path.is_file():
        raise UsageError(f"--data {name!r} does not exist")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                if "x" not in archive.files or "y" not in archive.files:
                    raise UsageError(f"--data {name!r} must hold arrays named x and y")
                x, y = archive["x"], archive["y"]
        except (ValueError, OSError) as err:
            raise UsageError(f"--data {name!r} is not a readable .npz: {err}") from err
    else:
        x, y = _read_csv(path, args.label_column)
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        raise UsageError(f"--data {name!r}: x must be a 2-d numeric array, got {x.dtype} {x.shape}")
    return np.asarray(x, float), y, path.name


def _read_csv(path: Path, label: str | None) -> tuple[np.ndarray, np.ndarray]:
    with path.open(encoding="utf-8") as f:
        header = [h.strip() for h in f.readline().strip().split(",")]
    if label is None:
        column = len(header) - 1
    elif label in header:
        column = header.index(label)
    else:
        raise UsageError(
            f"--label-column {label!r} is not a column of {path.name}: {', '.join(header)}"
        )
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except ValueError as err:
        raise UsageError(
            f"--data {str(path)!r}: not a numeric .csv with one header row: {err}"
        ) from err
    if table.shape[1] != len(header):
        raise UsageError(
            f"--data {str(path)!r}: rows have {table.shape[1]} columns, the header {len(header)}"
        )
    return np.delete(table, column, axis=1), table[:, column]


def split(
    y: np.ndarray, test_size: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices: seeded, and per class when ``stratify``."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    train, test = [], []
    for rows in groups:
        rows = rng.permutation(rows)
        n_test = round(len(rows) * test_size)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _scale(kind: str, train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    if kind == "none":
        return [train, *others]
    if kind == "standard":
        shift, spread = train.mean(axis=0), train.std(axis=0)
    else:
        shift, spread = train.min(axis=0), train.max(axis=0) - train.min(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    return [(a - shift) / spread for a in (train, *others)]


def _bytes(write: Any) -> bytes:
    """What ``write(file)`` writes, in memory."""
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    _check_hyperparameters(args)
    sizes = spec.parse_layers(args.layers)
    x, y, described = load_data(args)
    regression = (
        args.data in REGRESSION_SETS
        if args.loss is None
        else args.loss not in CLASSIFICATION_LOSSES
    )
    loss = args.loss or ("l2" if regression else "softmax_cross_entropy")
    if len(y) != len(x) or len(x) == 0:
        raise UsageError(f"--data {args.data!r}: x has {len(x)} rows, y has {len(y)}")
    targets: np.ndarray  # 2-d for regression, 1-d class indices for classification
    if regression:
        targets = np.asarray(y, float).reshape(len(y), -1)
        n_out, what = targets.shape[1], "targets"
        labels: np.ndarray | None = None
    else:
        labels, encoded = np.unique(y, return_inverse=True)
        targets = encoded.reshape(-1)
        n_out = len(labels) if loss == "softmax_cross_entropy" else 1
        what = "classes"
        if loss == "sigmoid_binary_cross_entropy" and len(labels) != 2:
            raise UsageError(f"--loss {loss} needs 2 classes; {described} has {len(labels)}")
    if sizes[0] != x.shape[1] or sizes[-1] != n_out:
        right = ",".join(map(str, (x.shape[1], *sizes[1:-1], n_out)))
        raise UsageError(
            f"--layers {args.layers} does not fit {described}: it has {x.shape[1]} features and "
            f"{n_out} {what}; use --layers {right}"
        )
    activation = args.activation
    if regression and "," not in activation:  # hidden activation, linear output
        activation = ",".join([activation] * (len(sizes) - 2) + ["identity"])
    network = spec.network(args.layers, activation, loss)  # usage errors before the proof
    command = (
        f"python -m derive train {naming.spec_command(network).removeprefix('python -m derive ')}"
    )
    outputs = [
        files.Output(Path(path), label, command)
        for label, path in (("--save", args.save), ("--plot", args.plot))
        if path
    ]
    files.check(outputs, force=args.force)  # a refused run trains nothing and writes nothing

    train, test = split(
        targets if not regression else np.zeros(len(x)), args.test_size, args.seed, not regression
    )
    x_train, x_test = _scale(args.scale, x[train], x[test])
    y_train, y_test = targets[train], targets[test]
    print(
        f"derive train: {described}, {len(x)} rows, {x.shape[1]} features, {n_out} {what}; "
        f"{len(train)} train / {len(test)} test (seed {args.seed}), scaling {args.scale}"
    )
    started = time.perf_counter()
    module = _build.network_module(args.layers, activation, loss, args.l2 > 0)
    print(
        f"derived and proved {'-'.join(map(str, sizes))} ({loss}"
        f"{' plus the L2 penalty' if args.l2 > 0 else ''}) in {time.perf_counter() - started:.2f} s"
    )

    params = module.init_params(seed=args.seed)
    optimizer = module.make_optimizer(args.optimizer, params, args.lr, args.weight_decay)
    bar = None if args.quiet else _progress(args.epochs)

    def report(epoch: int, history: dict[str, list[float]]) -> None:
        if bar is not None:
            bar.set_postfix({k: f"{v[-1]:.4f}" for k, v in history.items()}, refresh=False)
            bar.update(1)

    started = time.perf_counter()
    try:
        history = module.fit(
            params,
            x_train,
            y_train,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=optimizer,
            l2=args.l2,
            seed=args.seed,
            validation=(x_test, y_test),
            callback=report,
        )
    except FloatingPointError as err:
        print(f"derive train: {err}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    epochs = len(history["loss"])
    for part, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        if hasattr(module, "STATE"):  # layer kinds: inference (running statistics, no dropout)
            value = module.loss(params, xs, _targets(module, ys))
        else:
            value = module.backprop(params, xs, _targets(module, ys))[0]
        mean = value if loss == "mse" else value / len(xs)
        metric = "accuracy" if not regression else "R²"
        print(f"{part:5}: loss {mean:.4f}, {metric} {module.score(params, xs, ys):.4f}")
    print(
        f"trained {epochs} epochs in {seconds:.2f} s ({1000 * seconds / max(epochs, 1):.1f} ms/epoch)"
    )
    made = {
        "--save": lambda: _bytes(lambda f: module.save_checkpoint(f, params, optimizer)),
        "--plot": lambda: _plot(Path(str(args.plot)), history),
    }
    outputs = [replace(o, text=files.stamp(made[o.label](), command)) for o in outputs]
    for out, wrote in zip(outputs, files.write(outputs, force=args.force), strict=True):
        print(f"{'wrote' if wrote else 'unchanged'} {out.path}")
    return 0


def _targets(module: Any, y: np.ndarray) -> np.ndarray:
    """Targets as the module's loss reads them (one-hot for labels)."""
    dtype = np.dtype(np.float64)
    return np.asarray(module._as_targets("y", y, len(y), dtype))


def _progress(epochs: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=epochs, desc="epochs", unit="epoch", file=sys.stderr, dynamic_ncols=True)


def _plot(path: Path, history: dict[str, list[float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(history["loss"]) + 1)
    for key in ("loss", "val_loss"):
        if key in history:
            loss_ax.plot(epochs, history[key], label="test" if key.startswith("val") else "train")
    loss_ax.set(xlabel="epoch", ylabel="loss per example", title="loss")
    loss_ax.legend()
    for key in ("accuracy", "val_accuracy"):
        if key in history:
            acc_ax.plot(epochs, history[key], label="test" if key.startswith("val") else "train")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    if "accuracy" in history:
        acc_ax.legend()
    fig.tight_layout()
    data = _bytes(lambda f: fig.savefig(f, format=path.suffix.lower()[1:], metadata=_NO_DATE))
    plt.close(fig)
    return data


_NO_DATE: dict[str, Any] = {"Date": None}
"""The same history plots to the same bytes: matplotlib records no date."""


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (UsageError, spec.SpecError, files.Refused) as err:
        print(f"derive train: error: {err}", file=sys.stderr)
        return 2
    except _build.NotProved as err:
        print(f"derive train: {err}; nothing trained", file=sys.stderr)
        return 1
    except OSError as err:
        print(
            f"derive train: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 2
