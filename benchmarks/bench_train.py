"""Train on digits with derive, scikit-learn's MLPClassifier and a PyTorch eager loop.

Same data (digits, X/16, stratified 80/20 split, seed 0), architecture,
optimizer, batch size and number of epochs for all three; relu hidden layers
and softmax cross-entropy, no weight decay.  Every (seed, config) runs the
contenders back to back, so drift in the machine's speed hits them alike.
Reports median ms per epoch over the seeds and mean test accuracy, and the
training time derive needs to reach 97 % test accuracy.  One BLAS thread
(threadpoolctl) and one torch thread.

    python benchmarks/bench_train.py --epochs 200 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from derive import _build

ARCHITECTURES = [(64, 32, 10), (64, 128, 64, 10)]
OPTIMIZERS = {"adam": {"lr": 1e-3}, "nesterov": {"lr": 0.01, "momentum": 0.9}}
BATCHES = [32, 128]


def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return train_test_split(x / 16, y, test_size=0.2, stratify=y, random_state=0)


def run_derive(sizes, optimizer, batch, epochs, seed, data):
    x_train, x_test, y_train, y_test = data
    module = _build.network_module(",".join(map(str, sizes)), "relu", "softmax_cross_entropy")
    params = module.init_params(seed=seed)
    settings = OPTIMIZERS[optimizer]
    start = time.perf_counter()
    module.fit(
        params, x_train, y_train, epochs=epochs, batch_size=batch, optimizer=optimizer,
        lr=settings["lr"], seed=seed,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return seconds, module.score(params, x_test, y_test)


def run_sklearn(sizes, optimizer, batch, epochs, seed, data):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_train, x_test, y_train, y_test = data
    settings = OPTIMIZERS[optimizer]
    extra = (
        {"solver": "adam"}
        if optimizer == "adam"
        else {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": True}
    )
    model = MLPClassifier(
        sizes[1:-1], activation="relu", alpha=0.0, batch_size=batch,
        learning_rate_init=settings["lr"], max_iter=epochs, tol=0.0,
        n_iter_no_change=epochs + 1, random_state=seed, **extra,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(x_train, y_train)
        seconds = time.perf_counter() - start
    assert model.n_iter_ == epochs
    return seconds, model.score(x_test, y_test)


def run_torch(sizes, optimizer, batch, epochs, seed, data):
    import torch

    x_train, x_test, y_train, y_test = data
    torch.manual_seed(seed)
    layers: list = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(n_in, n_out, dtype=torch.float64), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    settings = OPTIMIZERS[optimizer]
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=settings["lr"], momentum=0.9, nesterov=True)
    xt, yt = torch.tensor(x_train), torch.tensor(y_train)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for begin in range(0, len(xt), batch):
            index = order[begin : begin + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xt[index]), yt[index]).backward()
            opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        predicted = model(torch.tensor(x_test)).argmax(dim=1).numpy()
    return seconds, float(np.mean(predicted == y_test))


def time_to_97(data, seed: int):
    """derive 64-32-10, Adam lr 3e-3, batch 32: training seconds until test accuracy >= 0.97."""
    x_train, x_test, y_train, y_test = data
    module = _build.network_module("64,32,10", "relu", "softmax_cross_entropy")
    params = module.init_params(seed=seed)
    elapsed, reached = [], []
    start = time.perf_counter()

    def callback(epoch, history):
        elapsed.append(time.perf_counter() - start)  # validation time included: conservative
        reached.append(history["val_accuracy"][-1])
        return reached[-1] >= 0.97

    module.fit(
        params, x_train, y_train, epochs=100, batch_size=32, lr=3e-3, seed=seed,
        validation=(x_test, y_test), callback=callback,
    )  # fmt: skip
    return elapsed[-1], len(elapsed), reached[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(1)
    contenders = {"derive": run_derive, "sklearn": run_sklearn}
    try:
        import torch

        torch.set_num_threads(1)
        contenders["torch"] = run_torch
    except ImportError:
        pass
    blas = [
        f"{i['internal_api']} {i['version']} ({i['num_threads']} thread)" for i in threadpool_info()
    ]
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}"
    )
    print(f"# Python {platform.python_version()}, numpy {np.__version__}, BLAS: {', '.join(blas)}")
    data = digits()
    for sizes in ARCHITECTURES:  # derive and prove once, outside the timings
        _build.network_module(",".join(map(str, sizes)), "relu", "softmax_cross_entropy")
    configs = [(s, o, b) for s in ARCHITECTURES for o in OPTIMIZERS for b in BATCHES]
    results: dict = {}
    for seed in args.seeds:
        for config in configs:
            for name, run in contenders.items():
                seconds, accuracy = run(*config, args.epochs, seed, data)
                results.setdefault((config, name), []).append((seconds, accuracy))
                print(
                    f"  seed {seed} {config} {name}: {1000 * seconds / args.epochs:.2f} ms/epoch, {accuracy:.4f}",
                    file=sys.stderr,
                )

    names = list(contenders)
    print(f"\n{args.epochs} epochs, seeds {args.seeds}: median ms per epoch, mean test accuracy\n")
    header = ["config", *(f"{n} ms" for n in names), *(f"{n} acc" for n in names)]
    header += ["derive/sklearn", "derive/torch" if "torch" in names else ""]
    print("| " + " | ".join(h for h in header if h) + " |")
    print("|" + "---|" * len([h for h in header if h]))
    for config in configs:
        sizes, optimizer, batch = config
        ms = {
            n: 1000 * statistics.median(s for s, _ in results[(config, n)]) / args.epochs
            for n in names
        }
        acc = {n: statistics.mean(a for _, a in results[(config, n)]) for n in names}
        row = ["-".join(map(str, sizes)) + f" {optimizer} b{batch}"]
        row += [f"{ms[n]:.2f}" for n in names] + [f"{acc[n]:.4f}" for n in names]
        row.append(f"{ms['derive'] / ms['sklearn']:.2f}")
        if "torch" in names:
            row.append(f"{ms['derive'] / ms['torch']:.2f}")
        print("| " + " | ".join(row) + " |")
    print()
    for seed in args.seeds:
        seconds, epochs, accuracy = time_to_97(data, seed)
        print(
            f"derive 64-32-10 Adam lr 3e-3 b32, seed {seed}: test accuracy {accuracy:.4f} "
            f"after {epochs} epochs, {seconds:.2f} s of training"
        )


if __name__ == "__main__":
    main()
