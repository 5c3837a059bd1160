"""The command line: derive, prove, print LaTeX, emit the module.

Exit status: 0 when everything was proved (and written or up to date), 1
when a proof fails or ``--check`` finds drift, 2 for bad usage.  Bad usage
prints one line on stderr and writes nothing.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import NoReturn

from . import __version__, codegen, files, latex, proof, spec
from .derivation import derive
from .files import Refused


class UsageError(Exception):
    """Bad usage: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m derive",
        description="Derive backpropagation for a fully connected network with SymPy, "
        "prove it exactly, print it as LaTeX and emit a numpy module.",
    )
    p.add_argument("--layers", required=True, help="layer widths n0,n1,...,nL, e.g. 20,50,10")
    p.add_argument(
        "--activation", default="tanh", help="one activation, or one per layer (comma list)"
    )
    p.add_argument("--loss", default="l2", help="the loss (default l2, the seed's)")
    p.add_argument("--out", default="generated", help="folder for the module (default: generated)")
    p.add_argument("--name", help="module name (default: mlp_<widths>)")
    p.add_argument(
        "--latex", action="store_true", help="print the derivation as LaTeX and write nothing"
    )
    p.add_argument("--latex-out", metavar="FILE.tex", help="also write a standalone LaTeX document")
    p.add_argument(
        "--check", action="store_true", help="exit 1 with a diff if the module on disk differs"
    )
    p.add_argument("--force", action="store_true", help="overwrite a file derive did not generate")
    p.add_argument(
        "--end-to-end-depth",
        type=int,
        default=proof.END_TO_END_DEPTH,
        metavar="N",
        help=f"run the end-to-end proof for networks up to this depth (default {proof.END_TO_END_DEPTH})",
    )
    p.add_argument("--version", action="version", version=f"derive {__version__}")
    return p


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
    network = spec.network(args.layers, args.activation, args.loss)
    name = spec.check_module_name(
        codegen.default_module_name(network) if args.name is None else args.name
    )
    target = _target(args.out, name)
    if args.latex_out is not None and Path(args.latex_out).is_dir():
        raise UsageError(f"--latex-out {args.latex_out!r} is a folder, not a file")

    derivation = derive(network)
    checks = proof.verify(derivation, end_to_end_depth=args.end_to_end_depth)
    failed = [c for c in checks if not c.ok]

    if args.latex:
        sys.stdout.write(latex.document_body(derivation, checks))
        return 1 if failed else 0

    print(
        f"derive {__version__}: {'-'.join(map(str, network.sizes))} network, "
        f"{', '.join(dict.fromkeys(a.name for a in network.activations))} activation, {network.loss.name} loss"
    )
    for c in checks:
        status = "FAILED" if not c.ok else ("skipped" if c.detail == "skipped" else "proved")
        why = f" -- {c.detail}" if not c.ok else ""
        print(f"  {status:8} {c.name}: {c.statement}  [{c.method}; {c.seconds:.2f} s]{why}")
    if failed:
        print(
            f"derive: {len(failed)} identity(ies) failed verification; nothing written",
            file=sys.stderr,
        )
        return 1

    source = codegen.render(derivation, name)
    if args.latex_out is not None:
        files.write_atomic(Path(args.latex_out), latex.document(derivation, checks))
        print(f"wrote {args.latex_out}")
    if args.check:
        return _check(target, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    changed = files.write_generated(target, source, force=args.force)
    print(f"{'wrote' if changed else 'unchanged'} {target}")
    return 0


def _check(target: Path, source: str) -> int:
    if not target.is_file():
        print(
            f"derive: {target} does not exist; run without --check to generate it", file=sys.stderr
        )
        return 1
    current = target.read_text(encoding="utf-8", errors="replace")
    if current == source:
        print(f"up to date: {target}")
        return 0
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        source.splitlines(keepends=True),
        str(target),
        "regenerated",
    )
    sys.stdout.writelines(diff)
    print(f"derive: {target} differs from what derive generates now", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # the report is Unicode math; never crash on it
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    if (sys.argv[1:] if argv is None else argv)[:1] == ["train"]:  # see derive/train_cli.py
        from . import train_cli

        return train_cli.main((sys.argv[1:] if argv is None else argv)[1:])
    try:
        return run(argv)
    except (UsageError, spec.SpecError, Refused) as err:
        print(f"derive: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(
            f"derive: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 2
