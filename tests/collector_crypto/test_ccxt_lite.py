"""ccxt_lite beside the full ccxt package: same version, error classes and binance class, or CI fails."""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter (ccxt_lite works at import time, once per process)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_lite_load_matches_the_full_package_loaded_beside_it() -> None:
    done = run(
        """
import sys
from assetsync_collector_crypto import ccxt_lite
lite, lite_binance = ccxt_lite.ccxt, ccxt_lite.AsyncBinance
loaded = sorted(n for n in sys.modules if n.startswith("ccxt.async_support.") and n.count(".") == 2)
assert loaded == ["ccxt.async_support.base", "ccxt.async_support.binance"], loaded  # the point of it
# Now the full package in the same interpreter, as if another library imported it afterwards.
del sys.modules["ccxt"], sys.modules["ccxt.async_support"]
import ccxt, ccxt.async_support
from ccxt.base import errors
assert ccxt is not lite and len(ccxt.exchanges) > 50
assert lite.__version__ == ccxt.__version__ == ccxt.async_support.__version__
names = [n for n in errors.__all__ if isinstance(getattr(ccxt, n), type)]
assert len(names) > 30 and "NetworkError" in names and "RequestTimeout" in names
different = [n for n in errors.__all__ if getattr(lite, n, None) is not getattr(ccxt, n)]
assert not different, f"error exports differ: {different}"
assert lite.error_hierarchy == ccxt.error_hierarchy
assert lite.Exchange is ccxt.Exchange and lite.decimal_to_precision is ccxt.decimal_to_precision
assert lite_binance is ccxt.async_support.binance
assert issubclass(lite_binance, ccxt.async_support.Exchange)
for m in ("fetch_balance", "fetch_tickers", "fetch_ohlcv", "fetch_my_trades", "fetch_orders"):
    assert callable(getattr(lite_binance, m)), m
print("same", ccxt.__version__)
"""
    )
    assert done.returncode == 0 and done.stdout.startswith("same 4."), done.stdout + done.stderr
    assert done.stderr == ""  # no fallback warning


def test_an_already_imported_ccxt_is_used_as_is() -> None:
    done = run(
        """
import ccxt, ccxt.async_support
from assetsync_collector_crypto import ccxt_lite
assert ccxt_lite.ccxt is ccxt and ccxt_lite.AsyncBinance is ccxt.async_support.binance
print("reused")
"""
    )
    assert done.returncode == 0 and done.stdout == "reused\n" and done.stderr == "", done.stderr


def test_a_failing_lite_load_falls_back_to_the_full_import_with_one_warning() -> None:
    # As if a ccxt release changed its layout: the lite load fails part way through.
    done = run(
        """
import importlib.util
real = importlib.util.find_spec
def broken(name, *a, **k):
    if name == "ccxt.async_support":
        raise ImportError("simulated layout change")
    return real(name, *a, **k)
importlib.util.find_spec = broken
from assetsync_collector_crypto import ccxt_lite
import ccxt
from ccxt.base.errors import NetworkError
assert ccxt_lite.ccxt is ccxt and len(ccxt.exchanges) > 50
assert ccxt_lite.AsyncBinance is ccxt.async_support.binance
assert ccxt_lite.ccxt.NetworkError is NetworkError
print("fell back")
"""
    )
    assert done.returncode == 0 and done.stdout == "fell back\n", done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "ccxt-lite could not load ccxt" in lines[0] and "simulated layout change" in lines[0]
    assert "full `import ccxt`" in lines[0]
