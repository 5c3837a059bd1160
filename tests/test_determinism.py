"""Same input, same bytes: rendering in processes with different hash seeds.

Rendering twice in one process cannot show nondeterminism that comes from
string hashing (set or dict iteration over SymPy objects), because both
renders share one hash seed.  So each render runs in its own interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RENDER = """
import hashlib, sys
from derive import latex, proof, spec
from derive.backends.numpy import module as numpy_module
from derive.derivation import derive
network = spec.network("5,4,3,2", "gelu,elu,softmax", "softmax_cross_entropy")
derivation = derive(network)
code = numpy_module.render(derivation, "m")
body = latex.document_body(derivation, proof.verify(derivation, end_to_end_depth=0))
print(hashlib.sha256(code.encode()).hexdigest(), hashlib.sha256(body.encode()).hexdigest())
"""


def _run(code: str, hash_seed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_module_and_latex_identical_under_different_hash_seeds():
    assert _run(RENDER, "1") == _run(RENDER, "2")


def test_the_harness_does_vary_the_hash_seed():
    """Negative control: output that iterates a set of strings differs between the seeds."""
    hash_ordered = (
        "print(list({'tanh', 'relu', 'gelu', 'elu', 'sigmoid', 'softplus', 'l2', 'mse'}))"
    )
    assert _run(hash_ordered, "1") != _run(hash_ordered, "2")
