"""Faithful local emulators of the external services (Binance, Xueqiu/Danjuan, Feishu, group bot)."""
