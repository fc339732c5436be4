"""The OKX client: ccxt's okx loaded alone, spot-only options, base URL, and no keys in public-only mode."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from assetsync_collector_okx.exchange import make_exchange


def test_only_the_okx_exchange_module_is_loaded() -> None:
    code = """
import sys
from assetsync_collector_okx import exchange
loaded = sorted(n for n in sys.modules if n.startswith("ccxt.async_support.") and n.count(".") == 2)
assert loaded == ["ccxt.async_support.base", "ccxt.async_support.okx"], loaded
assert callable(exchange.AssetsyncOkx.fetch_my_trades) and exchange.ccxt.AuthenticationError
print("lite")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "lite\n" and done.stderr == "", done.stdout + done.stderr


def test_public_only_client_has_no_keys_and_loads_spot_only(make_settings: Any) -> None:
    settings = make_settings({"asset_sync": {"okx": {"enabled": True, "base_url": "http://127.0.0.1:9/"}}})
    ex = make_exchange(settings)
    assert ex.urls["api"]["rest"] == "http://127.0.0.1:9"
    assert ex.options["fetchMarkets"]["types"] == ["spot"] and ex.has["fetchCurrencies"] is False
    assert not ex.apiKey and not ex.secret and not ex.password
    assert ex.enableRateLimit and ex.timeout == 15_000


def test_keys_without_the_passphrase_stay_public(make_settings: Any) -> None:
    settings = make_settings({"asset_sync": {"okx": {"enabled": True, "api_key": "k", "api_secret": "s"}}})
    assert not settings.okx_account_on()
    assert not make_exchange(settings).apiKey
