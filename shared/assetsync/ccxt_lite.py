"""Load one of ccxt's async exchanges without importing ccxt's other ~100 exchanges.

`import ccxt` executes package `__init__` files that import every exchange ccxt ships (sync and
async): ~0.8 s and ~60 MB of RSS for code this service never runs. Here the two package objects
are created with their real search paths but without running those `__init__` files, and carry the
error classes and version the package would export; every module that then loads (the exchange, ccxt's base Exchange, errors, signing) is ccxt's own, unmodified. If the full package is
already imported, it is used as is. Should a ccxt release break this, the full `import ccxt` is used
instead, with one warning (and tests/collector_crypto/test_ccxt_lite.py fails in CI first).
Shared by collector-crypto (binance) and collector-okx (okx); ccxt is imported only when `load` runs,
so importing this module costs nothing where ccxt is not installed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import logging
import re
import sys
import types

log = logging.getLogger("assetsync.ccxt_lite")


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


def _load_lite(exchange: str) -> tuple[types.ModuleType, type]:
    root = _package("ccxt")
    _package("ccxt.async_support")
    exchange_mod = importlib.import_module(f"ccxt.async_support.{exchange}")
    # A release that moved its exports elsewhere would leave the shell short of names: say so now.
    errors = importlib.import_module("ccxt.base.errors")
    missing = [n for n in ("__version__", "Exchange", *errors.__all__) if not hasattr(root, n)]
    if missing:
        raise ImportError(f"the ccxt package shell lacks {', '.join(missing[:5])}")
    return root, getattr(exchange_mod, exchange)


def _load_full(exchange: str) -> tuple[types.ModuleType, type]:
    """The plain `import ccxt`, after dropping whatever the lite load left half made."""
    for name in [n for n in sys.modules if n == "ccxt" or n.startswith("ccxt.")]:
        del sys.modules[name]
    import ccxt as full
    import ccxt.async_support

    return full, getattr(ccxt.async_support, exchange)


def load(exchange: str) -> tuple[types.ModuleType, type]:
    """ccxt and its async `exchange` class: the lite load, or the full import (with one warning) if it fails."""
    try:
        return _load_lite(exchange)
    except Exception as exc:
        log.warning(
            "ccxt-lite could not load ccxt %s (%s: %s); using the full `import ccxt` instead "
            "(slower start-up) — tests/collector_crypto/test_ccxt_lite.py shows what changed",
            _installed_version(),
            type(exc).__name__,
            exc,
        )
        return _load_full(exchange)


def _installed_version() -> str:
    try:
        return importlib.metadata.version("ccxt")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"
