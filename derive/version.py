"""derive's version: a leaf module, so printers can stamp it without importing the package facade."""

__version__ = "0.1.0"
