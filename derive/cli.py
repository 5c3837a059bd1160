"""The command line: derive, prove, print LaTeX, emit the module.

Exit status: 0 when everything was proved (and written or up to date), 1
when a proof fails or ``--check`` finds drift, 2 for bad usage.  Bad usage
prints one line on stderr and writes nothing.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from . import (
    api,
    backends,
    catalog,
    defaults,
    emittable,
    extra_outputs,
    files,
    naming,
    proof,
    report,
    spec,
    verification,
)
from .derivation import derive
from .files import Refused
from .tools import ToolMissing
from .version import __version__

TARGETS = backends.NAMES
"""What ``--target`` accepts: the numpy module (default), or the array API module."""

Target = backends.Backend


def target(name: str) -> Target:
    """The target called ``name``; a backend is imported only when it is used."""
    return backends.backend(name)


class UsageError(Exception):
    """Bad usage: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


END_TO_END_SECONDS = {0: 0.0, 1: 0.06, 2: 0.2, 3: 0.45}
"""Measured end-to-end proof times by expansion (depths 1-3) on a quiet 2-core machine."""

FIELD_SECONDS_PER_LAYER = 0.05
"""Deeper, the proof evaluates over a prime field: linear in depth (1.3 s at 30, 2.6 s at 60)."""

MAX_END_TO_END_DEPTH = 200
"""The deepest network derive accepts: its end-to-end proof takes about 10 s."""

ANNOUNCE_SECONDS = 5.0
"""A proof expected to take longer than this is announced on stderr before it starts."""


def end_to_end_estimate(depth: int) -> float:
    """Seconds the end-to-end proof of a depth-``depth`` network takes, about."""
    if depth in END_TO_END_SECONDS:
        return END_TO_END_SECONDS[depth]
    return 0.3 + FIELD_SECONDS_PER_LAYER * depth


def _end_to_end_depth(text: str) -> int:
    if not text.strip().isdigit() or not text.isascii() or len(text.strip()) > 4:
        raise UsageError(
            f"--end-to-end-depth {text!r}: give a whole number from 0 to {MAX_END_TO_END_DEPTH}"
        )
    depth = int(text)
    if depth > MAX_END_TO_END_DEPTH:
        raise UsageError(
            f"--end-to-end-depth {depth} is above the limit of {MAX_END_TO_END_DEPTH} (that proof "
            f"alone would take about {_duration(end_to_end_estimate(depth))})"
        )
    return depth


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.0f} hours"


def _help_epilog() -> str:
    acts = ", ".join(a for a in catalog.ACTIVATIONS if a != "softmax")
    params = ", ".join(f"{base}:{what.upper()}" for base, (_, what) in catalog.PARAMETRIC.items())
    low, high = (catalog.decimal(v) for v in catalog.PARAMETER_RANGE)
    return (
        f"activations: {acts} (softmax is the output of softmax_cross_entropy). "
        f"Parametric: {params}, a decimal with {low} <= |value| <= {high} and at most "
        f"{catalog.PARAMETER_DIGITS} significant digits, e.g. leaky_relu:0.2. "
        f"losses: {', '.join(catalog.LOSSES)}."
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m derive",
        description="Derive backpropagation for a fully connected network with SymPy, "
        "prove it exactly, print it as LaTeX and emit a numpy module.",
        epilog=_help_epilog(),
    )
    p.add_argument("--layers", help="layer widths n0,n1,...,nL, e.g. 20,50,10 (required)")
    p.add_argument(
        "--activation",
        default=defaults.ACTIVATION,
        metavar="NAME[:VALUE][,...]",
        help="one activation for every layer, or one per layer (comma list); "
        f"default {defaults.ACTIVATION}",
    )
    p.add_argument(
        "--loss",
        default=defaults.LOSS,
        metavar="NAME",
        help=f"the loss (default {defaults.LOSS}, the seed's)",
    )
    p.add_argument(
        "--l2",
        action="store_true",
        help="add the L2 penalty λ/2 Σ ‖W_l‖² to the loss: derived, proved and in the LaTeX; "
        "the module's backprop, loss and fit take l2=λ (default 0)",
    )
    p.add_argument(
        "--target",
        choices=TARGETS,
        default="numpy",
        help="numpy (default), or array-api: one module for numpy, torch, JAX, CuPy, Dask "
        "(default folder generated/array_api)",
    )
    p.add_argument("--out", help="folder for the module (default: generated)")
    p.add_argument("--name", help="module name (default: mlp_<widths>)")
    p.add_argument(
        "--latex",
        action="store_true",
        help="print the derivation as LaTeX on stdout instead of the report; write nothing",
    )
    p.add_argument("--latex-out", metavar="FILE.tex", help="also write a standalone LaTeX document")
    p.add_argument(
        "--graph-out", metavar="FILE", help="also write the graph: .dot, .svg, .png, .pdf"
    )
    p.add_argument(
        "--pdf-out", metavar="FILE.pdf", help="also write the document as PDF (pdflatex)"
    )
    p.add_argument(
        "--seed-check", action="store_true", help="check the seed's own equations and exit"
    )
    p.add_argument("--json", action="store_true", help="with --seed-check: print JSON")
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 with a diff if a file on disk differs from what would be written",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a file derive did not write, or wrote for another specification",
    )
    p.add_argument(
        "--end-to-end-depth",
        type=_end_to_end_depth,
        default=proof.END_TO_END_DEPTH,
        metavar="N",
        help="run the end-to-end proof for networks up to this depth, 0 to "
        f"{MAX_END_TO_END_DEPTH} (default {proof.END_TO_END_DEPTH})",
    )
    p.add_argument("--version", action="version", version=f"derive {__version__}")
    return p


NO_EFFECT = {
    "seed_check": (
        "layers",
        "l2",
        "latex",
        "latex_out",
        "graph_out",
        "pdf_out",
        "out",
        "name",
        "force",
        "check",
    ),
    "json": (),
    "latex": ("latex_out", "graph_out", "pdf_out", "out", "name", "force", "check"),
    "check": ("force",),
}
"""Options that have no effect next to another; together they are bad usage, never ignored."""


def _check_combination(args: argparse.Namespace) -> None:
    for mode, others in NO_EFFECT.items():
        if getattr(args, mode):
            for other in others:
                value = getattr(args, other)
                if value is not None and value is not False:
                    raise UsageError(
                        f"--{other.replace('_', '-')} has no effect with --{mode.replace('_', '-')}"
                        + (" (it writes nothing)" if mode in ("latex", "check") else "")
                    )


def _target(out: str, name: str) -> Path:
    folder = Path(out)
    for place in (folder, *folder.parents):  # the nearest existing ancestor must be a folder
        if place.exists():
            if not place.is_dir():
                what = "is a file" if place == folder else f"is inside {str(place)!r}, a file"
                raise UsageError(f"--out {out!r} {what}, not a folder")
            break
    return folder / f"{name}.py"


def run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    _check_combination(args)
    if args.seed_check:
        from . import seedcheck  # imported here: a code-generation run never needs it

        return seedcheck.main(as_json_output=args.json)
    if args.json:
        raise UsageError("--json goes with --seed-check")
    if args.layers is None:
        raise UsageError("the following arguments are required: --layers")
    network = spec.network(args.layers, args.activation, args.loss, args.l2)
    if args.l2 and args.target != "numpy" and network.dense:  # layer kinds: layered.py emits it
        raise UsageError(
            f"--l2 on a dense network is not supported by --target {args.target} yet; "
            "use the numpy target"
        )
    name = spec.check_module_name(
        naming.default_module_name(network) if args.name is None else args.name
    )
    command = naming.spec_command(network)
    backend = target(args.target)
    outputs: list[files.Output] = []
    refused = emittable.refusal(network, args.target)
    if refused is not None and not args.latex:
        raise UsageError(f"--layers {args.layers}: {refused}")
    if not args.latex:
        outputs.append(
            files.Output(
                _target(backend.folder if args.out is None else args.out, name),
                "module",
                backend.spec_command(network),
                create_folder=True,
            )
        )
    if args.latex_out is not None:
        outputs.append(files.Output(Path(args.latex_out), "--latex-out", command))
    outputs += extra_outputs.outputs(args, command)  # --graph-out, --pdf-out
    if not args.check:
        files.check(outputs, force=args.force)  # a refused run does no work and writes nothing
    if network.depth <= args.end_to_end_depth:
        seconds = end_to_end_estimate(network.depth)
        if seconds >= ANNOUNCE_SECONDS:
            print(
                f"derive: the end-to-end proof at depth {network.depth} takes about "
                f"{_duration(seconds)} (more on a busy machine); --end-to-end-depth "
                f"{network.depth - 1} skips it",
                file=sys.stderr,
            )

    derivation = derive(network)
    checks = verification.verify(derivation, end_to_end_depth=args.end_to_end_depth)
    failed = [c for c in checks if not c.ok]

    if args.latex:
        from . import latex_layers  # imported here: code generation alone never needs it

        sys.stdout.write(latex_layers.document_body(derivation, checks))
        return 1 if failed else 0

    print(report.title(network))
    for c in checks:
        print(report.line(c))
    if failed:
        print(
            f"derive: {report.count(len(failed), 'identity', 'identities')} failed verification; "
            "nothing written",
            file=sys.stderr,
        )
        return 1

    derived = api.Derived(network, name, derivation, checks)
    makers = {
        "module": lambda: backend.render(derivation, name),
        "--latex-out": derived.document,
    }
    outputs = [
        replace(
            o, text=makers[o.label]() if o.label in makers else extra_outputs.content(o, derived)
        )
        for o in outputs
    ]
    if args.check:
        return _check(outputs)
    changed = files.write(outputs, force=args.force)
    for out, wrote in zip(outputs, changed, strict=True):
        print(f"{'wrote' if wrote else 'unchanged'} {out.path}")
    return 0


def _check(outputs: list[files.Output]) -> int:
    drift = files.drifted(outputs)
    for out, current in drift:
        if current is None:
            print(
                f"derive: {out.path} does not exist; run without --check to generate it",
                file=sys.stderr,
            )
            continue
        if isinstance(out.text, bytes):
            print(f"derive: {out.path} differs from what derive generates now", file=sys.stderr)
            continue
        text = current.decode("utf-8", errors="replace")
        if text.replace("\r\n", "\n") == out.text and text != out.text:
            print(f"derive: {out.path} has CRLF line endings; derive writes LF", file=sys.stderr)
        diff = difflib.unified_diff(
            text.splitlines(keepends=True),
            out.text.splitlines(keepends=True),
            str(out.path),
            "regenerated",
        )
        sys.stdout.writelines(diff)
        print(f"derive: {out.path} differs from what derive generates now", file=sys.stderr)
    if drift:
        return 1
    for out in outputs:
        print(f"up to date: {out.path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # the report is Unicode math; never crash on it
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    if (sys.argv[1:] if argv is None else argv)[:1] == ["train"]:  # see derive/train_cli.py
        from . import train_cli

        return train_cli.main((sys.argv[1:] if argv is None else argv)[1:])
    try:
        return run(argv)
    except (UsageError, spec.SpecError, Refused, ToolMissing) as err:
        print(f"derive: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(
            f"derive: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 2
