"""The crypto collector: Binance balances, prices, klines and trades (via ccxt) as events on the bus.

Modules, one concern each:
- service: runs `crypto` task commands (one replica each) and publishes the schedule's commands
- sync: one sync — discover balances, price them, klines, trades, cost basis, publish, report
- exchange / ccxt_lite: the ccxt Binance client (spot only, base-URL rewrite), loaded without ccxt's
  other exchanges
- calls: every Binance call — retries with jittered backoff, Retry-After, failures a user can act on
- pricing / costbasis / names: USDT pricing routes, cost basis from fills (CONTRACTS §6), display names
- state: the collector's own cursors (klines, trades), valued fills and last seen quantities
"""
