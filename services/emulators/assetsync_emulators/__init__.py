"""Faithful local emulators of the outside services, and the demo built on them (not shipped).

- `common`: serving an app on loopback (in a thread or a task), free ports, the fault switch
  (5xx, 429/418, timeouts, HTML, truncated JSON) and the request log every emulator keeps.
- `binance`: Binance spot REST (`/api/v3`), signed endpoints, weights and bans, a seeded account.
- `xueqiu`: Xueqiu quotes/klines and Danjuan fund NAVs, cookies, a fixed clock, demo fund holdings.
- `feishu`: Feishu Bitable (tenant token, tables, fields, records) with its limits and error codes.
- `feishu_bot`: the Feishu group bot webhook (signatures, 5/s and 100/min limits, card log).
- `upstream`: the original host's strategy endpoints (the seed's 9 `upstream` codes), evolving data.
- `demo`: `assetsync up --demo` — every emulator served, settings pointing at them, demo keys and data.
"""
