"""The version of gateways (a leaf: setup.cfg and --version read it)."""

__version__ = "0.1.0"
