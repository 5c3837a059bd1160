"""The specification's defaults, the seed's choices: named once for the CLI, the API and naming.

A leaf module (no imports), so ``import derive`` stays light.
"""

ACTIVATION = "tanh"
"""The activation of every layer when none is given."""

LOSS = "l2"
"""The loss when none is given."""
