"""assetsync: the shared library of the asset-sync services."""

__version__ = "0.1.0"
