"""ccxt and its async Binance class, loaded without ccxt's other exchanges (see assetsync.ccxt_lite)."""

from __future__ import annotations

from typing import Any

from assetsync.ccxt_lite import load

ccxt: Any
AsyncBinance: Any
ccxt, AsyncBinance = load("binance")
