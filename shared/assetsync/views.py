"""`assetsync holdings` and `assetsync report`: the 持仓 table and a day's summary in the terminal.

They read the store's SQLite directly (read-only, through `assetsync_store.views`), so they work
whether or not a stack is running. Colour only on a terminal (and never with NO_COLOR set).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TextIO

from assetsync.config import Settings
from assetsync.events import TASK_LABEL

RED, GREEN, YELLOW, DIM, BOLD, RESET = "\033[31m", "\033[32m", "\033[33m", "\033[2m", "\033[1m", "\033[0m"
TYPE_LABEL = {"crypto": "加密货币", "fund": "基金"}


def use_colour(out: TextIO) -> bool:
    return out.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def width(text: str) -> int:
    """Terminal columns of `text` (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, cols: int, right: bool) -> str:
    gap = " " * max(0, cols - width(text))
    return gap + text if right else text + gap


class Painter:
    """Wraps text in ANSI colours when enabled. Gains are red and losses green, as Chinese quotes show them."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def __call__(self, text: str, colour: str) -> str:
        return f"{colour}{text}{RESET}" if self.on and colour else text

    def signed(self, v: float | None) -> str:
        return "" if v is None or v == 0 else (RED if v > 0 else GREEN)


def table(
    headers: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]], right: set[int], paint: Painter
) -> str:
    """An aligned table; each cell is (text, colour)."""
    cols = [max([width(h)] + [width(r[i][0]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(pad(h, cols[i], i in right) for i, h in enumerate(headers)).rstrip()]
    lines.append("  ".join("─" * c for c in cols))
    for r in rows:
        cells = []
        for i, (t, c) in enumerate(r):
            gap = " " * max(0, cols[i] - width(t))
            cells.append(gap + paint(t, c) if i in right else paint(t, c) + gap)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def num(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def price(v: float | None) -> str:
    if v is None:
        return "—"
    a = abs(v)
    return num(v, 2 if a >= 100 else 4 if a >= 1 else 8)


def qty(v: float) -> str:
    return f"{v:,.8f}".rstrip("0").rstrip(".")


def signed(v: float | None, digits: int = 2, suffix: str = "") -> str:
    return "—" if v is None else f"{v:+,.{digits}f}{suffix}"


def _open(settings: Settings) -> sqlite3.Connection:
    from assetsync_store import views

    return views.open_readonly(settings.db_path)


def holdings_command(settings: Settings, *, as_json: bool, site: str = "", out: TextIO | None = None) -> int:
    """Print the 持仓 table (or its JSON) of this site or of another `site` replicated here; exit 1
    when there is no store database yet or nothing of that site."""
    from assetsync_store import sites, views

    origin = "" if site in ("", settings.site_id) else site

    out = out or sys.stdout
    try:
        conn = _open(settings)
    except views.StoreNotFound as exc:
        print(f"assetsync: {exc}", file=sys.stderr)
        return 1
    try:
        val = views.valuation_for(conn, settings)
        now = int(time.time() * 1000)
        rows = views.holdings(conn, val, now_ms=now, origin=origin)
        tot = views.totals(rows, val)
    finally:
        conn.close()
    if origin and not rows:
        others = sorted(k for k in sites(settings.db_path, settings.site_id) if k != settings.site_id)
        hint = (
            f"sites with replicated holdings: {', '.join(others)}"
            if others
            else ("no other site's holdings have been received (sync_gateway.receiver)")
        )
        print(f"assetsync: no holdings of site {site!r} in {settings.db_path}; {hint}", file=sys.stderr)
        return 1
    known = sites(settings.db_path, settings.site_id)
    name = site or settings.site_id
    if as_json:
        doc = {
            "site": name,
            "own": not origin,
            "sites": known,
            "base_currency": val.base_currency,
            "totals": asdict(tot),
            "holdings": [r.to_dict() for r in rows],
        }
        print(json.dumps(doc, ensure_ascii=False, indent=2), file=out)
        return 0
    paint = Painter(use_colour(out))
    if not rows:
        print("no holdings yet: run `assetsync task crypto` / `assetsync task fund`", file=out)
        return 0
    headers = ["资产代码", "资产名称", "资产类型", "币种", "数量", "当前价格", "当前市值",
               "成本价", "总成本", "收益", "收益率", f"折合{val.base_currency}", "占比", "标记"]  # fmt: skip
    body = []
    for h in rows:
        flags = []
        if h.unpriced:
            flags.append("未定价")
        elif h.stale:
            flags.append("价格过期")
        if h.no_rate:
            flags.append("无汇率")
        body.append(
            [
                (h.asset, BOLD),
                (h.name if h.name != h.asset else "", ""),
                (TYPE_LABEL.get(h.asset_type, h.asset_type), ""),
                (h.currency, ""),
                (qty(h.quantity), ""),
                (price(h.price), ""),
                (num(h.value), ""),
                (price(h.avg_cost), ""),
                (num(h.total_cost), ""),
                (signed(h.pnl), paint.signed(h.pnl)),
                (signed(h.pnl_pct, 2, "%"), paint.signed(h.pnl_pct)),
                (num(h.value_base), ""),
                ("—" if h.weight is None else f"{h.weight:.2f}%", ""),
                (" ".join(flags), YELLOW if flags else ""),
            ]
        )
    print(table(headers, body, {4, 5, 6, 7, 8, 9, 10, 11, 12}, paint), file=out)
    line = (
        f"总市值 {num(tot.total_value)} {tot.base_currency}  总成本 {num(tot.total_cost)}  "
        f"总收益 {paint(signed(tot.total_pnl), paint.signed(tot.total_pnl))} "
        f"({paint(signed(tot.pnl_pct, 2, '%'), paint.signed(tot.pnl_pct))})  持仓 {tot.asset_count}"
    )
    print(f"\n{line}", file=out)
    notes = []
    if tot.unpriced:
        notes.append(f"{tot.unpriced} 个未定价(不计入市值)")
    if tot.stale:
        notes.append(f"{tot.stale} 个价格超过 {val.stale_hours:g} 小时未更新")
    if tot.no_rate:
        notes.append(f"缺少汇率 {', '.join(tot.no_rate)}: add it to asset_sync.fx_rates")
    if notes:
        print(paint("; ".join(notes), YELLOW), file=out)
    if len(known) > 1 or origin:  # more than one site's data here: say whose this is
        whose = "replicated from that site" if origin else "this site"
        rest = ", ".join(k for k in known if k != name)
        print(f"site {name} ({whose}): {len(rows)} holdings; also in this store: {rest}", file=out)
    return 0


def report_command(settings: Settings, day: str | None, *, as_json: bool, out: TextIO | None = None) -> int:
    """Print a day's summary (default: the latest snapshot); exit 1 when that day has no snapshot."""
    from assetsync_store import views

    out = out or sys.stdout
    try:
        conn = _open(settings)
    except views.StoreNotFound as exc:
        print(f"assetsync: {exc}", file=sys.stderr)
        return 1
    try:
        rep = views.day_report(conn, day, views.valuation_for(conn, settings))
    finally:
        conn.close()
    if rep is None:
        what = f"for {day}" if day else "yet"
        print(
            f"assetsync: no snapshot {what}: run `assetsync task snapshot` (or wait for 00:00)",
            file=sys.stderr,
        )
        return 1
    if as_json:
        print(json.dumps(rep.to_dict(), ensure_ascii=False, indent=2), file=out)
        return 0
    print(render_report(rep.to_dict(), Painter(use_colour(out))), file=out)
    return 0


def render_report(r: dict[str, Any], paint: Painter) -> str:
    """The report as lines of text (also the plain-text form of the daily card)."""
    ccy = r["base_currency"]

    def change(v: float | None, pct: float | None) -> str:
        if v is None:
            return "—(no snapshot that day)"
        return paint(f"{signed(v)} ({signed(pct, 2, '%')})", paint.signed(v))

    lines = [
        paint(f"资产日报 {r['date']}", BOLD),
        f"  总市值    {num(r['total_value'])} {ccy}",
        f"  较昨日    {change(r['change_day'], r['change_day_pct'])}",
        f"  较上周    {change(r['change_week'], r['change_week_pct'])}",
        f"  总成本    {num(r['total_cost'])}",
        f"  总收益    {paint(signed(r['total_pnl']), paint.signed(r['total_pnl']))} "
        f"({paint(signed(r['pnl_pct'], 2, '%'), paint.signed(r['pnl_pct']))})",
        f"  持仓数量  {r['asset_count']}",
    ]
    if r["movers"]:
        lines.append("")
        rows = [
            [
                (m["asset"], BOLD),
                (m["name"] if m["name"] != m["asset"] else "", ""),
                (price(m["price"]) + " " + m["currency"], ""),
                (signed(m["change_pct"], 2, "%"), paint.signed(m["change_pct"])),
                (
                    signed(m["value_change"]) if m["value_change"] is not None else "—",
                    paint.signed(m["value_change"]),
                ),
            ]
            for m in r["movers"]
        ]
        lines.append(table(["涨跌榜", "名称", "价格", "日涨跌", f"市值变化 {ccy}"], rows, {2, 3, 4}, paint))
    lines.append("")
    if r["failures"]:
        lines.append(paint("当日失败的数据源:", RED))
        for f in r["failures"]:
            counts = ", ".join(f"{k} {f[k]}" for k in ("failed", "partial") if f.get(k))
            lines.append(
                f"  - {f['source']} {TASK_LABEL.get(f['task'], f['task'])}: {counts} — {f['last_message']}"
            )
    else:
        lines.append("当日数据源: 全部成功")
    return "\n".join(lines)
