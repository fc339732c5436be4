"""Serve the Binance, OKX, Xueqiu/Danjuan, Feishu open-platform, Feishu-bot and alternative.me emulators as one process.

`python -m assetsync_emulators.serve --host 0.0.0.0 --binance-port 8001 --xueqiu-port 8002
--feishu-port 8003 --bot-port 8004 --okx-port 8005 --alternative-me-port 8006 --xueqiu-token T` runs them in a container of their own (the
deploy test's stand-in for the real exchanges and Feishu). Port 0 picks a free port; the line
printed once every emulator listens is JSON: the name of each emulator -> its base URL. The Feishu
tenant starts with the 持仓/历史/日志 tables and the demo's hand-kept fund rows, as `up --demo` has.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence

from starlette.types import ASGIApp

from assetsync_emulators.alternative_me import AlternativeMeEmulator
from assetsync_emulators.binance import BinanceEmulator, create_app
from assetsync_emulators.common import serve
from assetsync_emulators.feishu import FeishuEmulator
from assetsync_emulators.feishu_bot import BotEmulator
from assetsync_emulators.okx import OkxEmulator
from assetsync_emulators.okx import create_app as create_okx_app
from assetsync_emulators.xueqiu import DEFAULT_ETFS, DEFAULT_FUNDS, DEMO_FUND_HOLDINGS, XueqiuEmulator

log = logging.getLogger("assetsync_emulators.serve")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m assetsync_emulators.serve", description=__doc__.split("\n")[0]
    )
    p.add_argument("--host", default="127.0.0.1", help="address every emulator binds (default 127.0.0.1)")
    p.add_argument("--binance-port", type=int, default=0, help="Binance REST API port (0 = any free)")
    p.add_argument("--xueqiu-port", type=int, default=0, help="Xueqiu + Danjuan port (0 = any free)")
    p.add_argument("--feishu-port", type=int, default=0, help="Feishu open platform port (0 = any free)")
    p.add_argument("--bot-port", type=int, default=0, help="Feishu group-bot webhook port (0 = any free)")
    p.add_argument("--okx-port", type=int, default=0, help="OKX v5 REST API port (0 = any free)")
    p.add_argument(
        "--alternative-me-port", type=int, default=0, help="alternative.me fear & greed port (0 = any free)"
    )
    p.add_argument("--seed", type=int, default=1, help="Binance account and price model seed (default 1)")
    p.add_argument(
        "--binance-assets",
        type=int,
        default=0,
        help="assets the Binance account holds (default: the 10 core ones; more make a longer first sync)",
    )
    p.add_argument(
        "--xueqiu-token",
        default="",
        help="the xq_a_token cookie value Xueqiu accepts (default: a random one, printed with the URLs)",
    )
    return p


def seeded_feishu() -> FeishuEmulator:
    """A Feishu tenant with the synced tables and the user's hand-kept fund rows in 持仓."""
    feishu = FeishuEmulator()
    names = {**{s: n for s, (n, _) in DEFAULT_ETFS.items()}, **{c: v[0] for c, v in DEFAULT_FUNDS.items()}}
    feishu.seed_demo(
        [
            (h["symbol"], names.get(h["symbol"], h["symbol"]), h["quantity"], h["avg_cost"])
            for h in DEMO_FUND_HOLDINGS
        ]
    )
    return feishu


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Serve every emulator until `stop` is set."""
    xueqiu = XueqiuEmulator.with_defaults(**({"token": args.xueqiu_token} if args.xueqiu_token else {}))
    apps: list[tuple[str, ASGIApp, int]] = [
        (
            "binance",
            create_app(BinanceEmulator(seed=args.seed, size=args.binance_assets or None)),
            args.binance_port,
        ),
        ("xueqiu", xueqiu.app, args.xueqiu_port),
        ("feishu", seeded_feishu().app, args.feishu_port),
        ("bot", BotEmulator().app, args.bot_port),
        ("okx", create_okx_app(OkxEmulator(seed=args.seed)), args.okx_port),
        ("alternative_me", AlternativeMeEmulator(seed=args.seed).app, args.alternative_me_port),
    ]
    async with contextlib.AsyncExitStack() as stack:
        urls = {
            name: await stack.enter_async_context(serve(app, args.host, port)) for name, app, port in apps
        }
        print(json.dumps({**urls, "xueqiu_cookie": xueqiu.cookie()}), flush=True)
        await stop.wait()
        log.info("emulators: stopping")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(args, stop)

    try:
        asyncio.run(_main())
    except OSError as exc:  # a port taken or an address not on this host: say which
        print(f"emulators: cannot listen on {args.host}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
