"""Run the command line in-process: fast, and still exactly what ``python -m derive`` runs."""

from __future__ import annotations

from dataclasses import dataclass

from derive import cli


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(capsys, *args: str) -> Result:
    """``python -m derive ARGS`` in this process; the caller chdirs where it should run."""
    capsys.readouterr()
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return Result(code, out, err)
