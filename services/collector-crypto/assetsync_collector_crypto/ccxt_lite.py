"""Load ccxt's async Binance exchange without importing ccxt's other ~100 exchanges.

`import ccxt` executes package `__init__` files that import every exchange ccxt ships (sync and
async): ~0.8 s and ~60 MB of RSS for code this service never runs. Here the two package objects
are created with their real search paths but without running those `__init__` files, and carry the
error classes and version the package would export; every module that then loads (the Binance
exchange, ccxt's base Exchange, errors, signing) is ccxt's own, unmodified. If the full package is
already imported, it is used as is.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
import types
from typing import Any


def _package(name: str) -> types.ModuleType:
    """The package module for `name`: the imported one, or a shell that runs only the base lines.

    The shell executes the lines of the real `__init__` that export ccxt's base (version, Exchange,
    errors, precision helpers) and skips the ones importing individual exchanges.
    """
    existing = sys.modules.get(name)
    if existing is not None:
        return existing
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None or spec.origin is None:
        raise ImportError(f"{name} is not installed")
    shell = types.ModuleType(name)
    shell.__path__ = list(spec.submodule_search_locations)
    shell.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    shell.__spec__.submodule_search_locations = shell.__path__
    shell.__file__ = spec.origin
    sys.modules[name] = shell
    with open(spec.origin, encoding="utf-8") as f:
        base_lines = [line for line in f if _BASE_LINE.match(line)]
    exec(compile("".join(base_lines), spec.origin, "exec"), shell.__dict__)
    return shell


# `__version__ = ...` and `from ccxt[.async_support].base... import X` lines of ccxt's __init__ files.
_BASE_LINE = re.compile(r"^(__version__\s*=|from ccxt(\.async_support)?\.base[.\w]* import \w+)")


def _load() -> tuple[types.ModuleType, type]:
    root = _package("ccxt")
    _package("ccxt.async_support")
    binance_mod = importlib.import_module("ccxt.async_support.binance")
    return root, binance_mod.binance


ccxt: Any
AsyncBinance: Any
ccxt, AsyncBinance = _load()
