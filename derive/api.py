"""The public Python API: one call derives and proves; every output is then in memory.

    import derive
    d = derive.derive([20, 50, 10], activation="tanh", loss="l2")
    d.checks            # what was proved, the verdict, the time
    d.latex()           # the document body; d is displayed as its math in a notebook
    d.graph()           # the computational graph (an SVG in a notebook when dot is installed)
    m = d.module()      # the generated module, imported in memory: no file written
    d.write("generated")

Bad input raises the same ``ValueError`` (``spec.SpecError``) the command line
reports.  Outputs that need generated code refuse with ``ProofFailed`` when a
proof failed: a wrong module is never handed out.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import re
import shutil
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import emittable, files, naming, proof, spec, verification
from . import graph as graph_module
from .backends.numpy import module as numpy_module
from .check import Check
from .derivation import Derivation
from .derivation import derive as derive_identities
from .model import Network


class ProofFailed(RuntimeError):
    """A derived identity failed its proof, so no code or document is produced from it."""


@dataclass(frozen=True)
class CheckResult:
    """One verification, for a reader: what was checked, the verdict, how long it took."""

    what: str
    verdict: str  # "proved", "skipped" or "failed"
    time: float  # seconds
    statement: str
    method: str
    detail: str = ""


def _verdict(check: Check) -> str:
    return check.status.value


def _text(value: str | Sequence[Any], what: str) -> str:
    """A list given from Python as the command line's comma-separated text."""
    if isinstance(value, str):
        return value
    try:
        return ",".join(str(v) for v in value)
    except TypeError:
        raise spec.SpecError(
            f"--{what} {value!r}: give a list or a comma-separated string"
        ) from None


class Graph:
    """DOT text with notebook display: an SVG when Graphviz's dot is installed."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return self.source

    def render(self, fmt: str) -> bytes:
        return graph_module.render(self.source, fmt)

    def _repr_svg_(self) -> str | None:
        if shutil.which("dot") is None:
            return None  # the notebook shows the DOT text instead
        return self.render("svg").decode("utf-8")


class _InMemory(importlib.abc.SourceLoader):
    """Loads one module from a string: the generated source, never user text."""

    def __init__(self, source: str, path: str) -> None:
        self.source, self.path = source, path

    def get_filename(self, fullname: str) -> str:
        return self.path

    def get_data(self, path: str) -> bytes:
        return self.source.encode("utf-8")


class Derived:
    """A network derived and proved; each output is made on demand and cached."""

    def __init__(
        self, network: Network, name: str, derivation: Derivation, checks: list[Check]
    ) -> None:
        self.network = network
        self.name = name
        self.derivation = derivation
        self.proof_checks = list(checks)
        self._source: str | None = None
        self._module: types.ModuleType | None = None

    @property
    def checks(self) -> list[CheckResult]:
        return [
            CheckResult(c.name, _verdict(c), c.seconds, c.statement, c.method, c.detail)
            for c in self.proof_checks
        ]

    @property
    def ok(self) -> bool:
        """True when every identity was proved."""
        return all(c.ok for c in self.proof_checks)

    def _require_proof(self, what: str) -> None:
        failed = [c.name for c in self.proof_checks if not c.ok]
        if failed:
            raise ProofFailed(f"{what}: not produced, the proof failed for {', '.join(failed)}")

    # --- the document ---------------------------------------------------------

    def latex(self) -> str:
        """The LaTeX document body (sections, text and math)."""
        from . import latex_layers

        return latex_layers.document_body(self.derivation, self.proof_checks)

    @property
    def command(self) -> str:
        """The command that regenerates this network's files (without ``--name``)."""
        return naming.spec_command(self.network)

    def document(self) -> str:
        """The standalone LaTeX document (compiles with pdflatex)."""
        from . import latex_layers

        return latex_layers.document(self.derivation, self.proof_checks, self.command)

    def pdf(self) -> bytes:
        """The document compiled by pdflatex (``tools.ToolMissing`` when it is not installed)."""
        from .pdf import compile_pdf

        self._require_proof("the PDF")
        return compile_pdf(self.document())

    def _repr_latex_(self) -> str:
        """Only what MathJax renders: the document's display math, as aligned blocks."""
        blocks = re.findall(r"\\begin\{align\*\}\n(.*?)\n\\end\{align\*\}", self.latex(), re.S)
        return "\n".join(f"$$\\begin{{aligned}}\n{b}\n\\end{{aligned}}$$" for b in blocks)

    def __repr__(self) -> str:
        verdicts = [c.verdict for c in self.checks]
        summary = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
        widths = "-".join(map(str, self.network.sizes))
        return f"<derive {widths} network, {self.network.loss.name} loss: {summary}>"

    # --- the picture ----------------------------------------------------------

    def dot(self, header: str = "") -> str:
        """The computational graph as DOT text."""
        return graph_module.dot(self.network, header=header)

    def graph(self) -> Any:
        """The graph for display: a ``graphviz.Source`` when the package and dot are
        installed, else a ``Graph`` (DOT text that shows as SVG when dot is installed)."""
        text = self.dot()
        if shutil.which("dot") is not None:
            try:
                import graphviz  # optional

                return graphviz.Source(text)
            except ImportError:
                pass
        return Graph(text)

    def graph_bytes(self, fmt: str, header: str = "") -> bytes:
        """The graph as a file's bytes: .dot text, or .svg/.png/.pdf rendered by dot."""
        return graph_module.render(self.dot(header=header if fmt == "dot" else ""), fmt)

    def graph_file(self, fmt: str) -> str | bytes:
        """The graph as derive writes it: with derive's marker for this specification."""
        if fmt == "dot":
            return self.dot(header=f"Generated by `{self.command}`: the computational graph")
        return files.stamp(self.graph_bytes(fmt), self.command)

    # --- the code -------------------------------------------------------------

    def source(self) -> str:
        """The generated module's code."""
        self._require_proof("the module")
        refused = emittable.refusal(self.network, "numpy")
        if refused is not None:
            raise spec.SpecError(refused)
        if self._source is None:
            self._source = numpy_module.render(self.derivation, self.name)
        return self._source

    def module(self) -> types.ModuleType:
        """The generated module, imported from memory (no file written, not put in
        sys.modules); cached.  The import system runs it, as it would the file."""
        if self._module is None:
            loader = _InMemory(self.source(), f"<derive {self.name}>")
            found = importlib.util.spec_from_loader(self.name, loader)
            assert found is not None
            module = importlib.util.module_from_spec(found)
            loader.exec_module(module)
            self._module = module
        return self._module

    def write(self, out: str | Path = "generated", force: bool = False) -> Path:
        """Write the module to ``out/<name>.py`` through derive's one write path (never over a
        file derive did not write, or wrote for another specification, unless ``force``)."""
        target = Path(out) / f"{self.name}.py"
        output = files.Output(target, "module", self.command, self.source(), create_folder=True)
        files.write([output], force=force)
        return target


def derive(
    layers: str | Sequence[int | str],
    activation: str | Sequence[str] = "tanh",
    loss: str = "l2",
    *,
    l2: bool = False,
    name: str | None = None,
    end_to_end_depth: int = proof.END_TO_END_DEPTH,
) -> Derived:
    """Derive and prove backpropagation for a network; see the module docstring.

    ``l2=True`` adds the penalty λ/2 Σ_l ‖W_l‖_F² to the loss (as ``--l2``).
    """
    if not isinstance(loss, str):
        raise spec.SpecError(f"--loss {loss!r}: give the loss's name, e.g. 'l2'")
    if not isinstance(l2, bool):
        raise spec.SpecError(
            f"l2={l2!r}: give True or False (λ itself is an argument at run time, "
            "backprop(..., l2=λ))"
        )
    network = spec.network(_text(layers, "layers"), _text(activation, "activation"), loss, l2)
    name = spec.check_module_name(naming.default_module_name(network) if name is None else name)
    derivation = derive_identities(network)
    checks = verification.verify(derivation, end_to_end_depth=end_to_end_depth)
    return Derived(network, name, derivation, checks)


def seed_check() -> list[Any]:
    """The seed's equations, each with the engine's verdict (``seedcheck.Verdict``)."""
    from . import seedcheck

    return list(seedcheck.check())
