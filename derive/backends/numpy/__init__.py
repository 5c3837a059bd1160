"""The numpy target (the default): one standalone module that imports numpy only."""

from .module import TARGET, default_module_name, render, spec_command

__all__ = ["TARGET", "default_module_name", "render", "spec_command"]
