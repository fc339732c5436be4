"""Interactive cards for the Feishu group bot: one builder per alert kind (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from assetsync.events import BackupResult, ServiceLifecycle, SinkRejected, TaskResult

from assetsync_alerter.prices import Move, Stale

Color = Literal["red", "orange", "blue", "green"]
Card = dict[str, Any]

TASK_TITLES = {
    "crypto": "加密货币同步 (crypto_sync)",
    "fund": "基金同步 (fund_sync)",
    "okx": "OKX 同步 (okx_sync)",
    "snapshot": "每日快照 (snapshot)",
    "backup": "数据库备份 (backup)",
    "restore": "数据库恢复 (restore)",
    "store": "数据存储 (store)",
}
STATUS_TEXT = {"success": "成功", "partial": "部分成功", "failed": "失败"}
MAX_ASSETS = 15  # failing assets listed on a card; the rest are counted
MAX_TEXT = 600


def when(ms: int, tz: str) -> str:
    """A ms timestamp as local time, e.g. 2026-11-22 09:00:05 (Asia/Shanghai)."""
    if not ms:
        return "-"
    t = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(ZoneInfo(tz))
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(text: str) -> dict[str, Any]:
    return {"tag": "div", "text": {"tag": "lark_md", "content": text}}


def _fields(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    return {
        "tag": "div",
        "fields": [
            {"is_short": True, "text": {"tag": "lark_md", "content": f"**{k}**\n{v}"}} for k, v in pairs
        ],
    }


def card(color: Color, title: str, elements: list[dict[str, Any]], footer: str) -> Card:
    """The card envelope: a colored header, the body, a footer note."""
    body = [*elements, {"tag": "hr"}, {"tag": "note", "elements": [{"tag": "plain_text", "content": footer}]}]
    return {
        "config": {"wide_screen_mode": True},
        "header": {"template": color, "title": {"tag": "plain_text", "content": title}},
        "elements": body,
    }


def task_name(task: str) -> str:
    return TASK_TITLES.get(task, task)


def failing_assets(r: TaskResult) -> str:
    """`- ASSET: reason` per failing asset, capped at MAX_ASSETS."""
    lines = [
        f"- **{e.asset}**{f' ({e.part})' if e.part else ''}: {_clip(e.reason, 200)}"
        for e in r.errors[:MAX_ASSETS]
    ]
    if len(r.errors) > MAX_ASSETS:
        lines.append(f"- … 另有 {len(r.errors) - MAX_ASSETS} 个")
    return "\n".join(lines)


def task_card(
    r: TaskResult,
    color: Color,
    *,
    tz: str,
    footer: str,
    reminder: int = 0,
    since: int = 0,
    min_rate: float = 0.0,
) -> Card:
    """A failed (red) or partial (orange) task run: task, time, counts, duration, failing assets."""
    if r.status == "failed":
        title = f"❌ 同步完全失败 · {task_name(r.task)}"
    else:
        title = f"⚠️ 同步部分成功 · {task_name(r.task)}"
    if reminder:
        title = f"🔁 仍未恢复(提醒 {reminder}) · " + title
    pairs = [
        ("任务", task_name(r.task)),
        ("时间", when(r.finished_at or r.started_at, tz)),
        ("状态", STATUS_TEXT.get(r.status, r.status)),
        ("数据源", r.source),
        ("成功/总数", f"{r.records}/{r.total}"),
        (
            "成功率",
            f"{r.success_rate * 100:.1f}%"
            + (f"(阈值 {min_rate * 100:.0f}%)" if r.status == "partial" else ""),
        ),
        ("耗时", f"{r.duration:.1f} 秒"),
        ("失败数", str(len(r.errors))),
    ]
    elements: list[dict[str, Any]] = [_fields(pairs)]
    if r.message:
        elements.append(_md(f"**信息**\n{_clip(r.message)}"))
    if r.errors:
        elements.append(_md(f"**失败资产**\n{failing_assets(r)}"))
    if reminder and since:
        elements.append(_md(f"自 {when(since, tz)} 起持续"))
    return card(color, title, elements, footer)


def backup_card(b: BackupResult, *, tz: str, footer: str, reminder: int = 0) -> Card:
    """A failed database backup (red)."""
    title = "❌ 数据库备份失败" if not reminder else f"🔁 仍未恢复(提醒 {reminder}) · ❌ 数据库备份失败"
    pairs = [
        ("任务", task_name("backup")),
        ("时间", when(b.finished_at or b.started_at, tz)),
        ("耗时", f"{max(0.0, (b.finished_at - b.started_at) / 1000):.1f} 秒"),
        ("完整性", b.integrity or "-"),
    ]
    elements = [_fields(pairs), _md(f"**错误**\n{_clip(b.error or '未知错误')}")]
    if b.path:
        elements.append(_md(f"**文件**\n{b.path}"))
    return card("red", title, elements, footer)


def sink_card(s: SinkRejected, *, tz: str, footer: str, reminder: int = 0) -> Card:
    """A sink (Feishu table) that refuses records permanently (red)."""
    title = f"❌ 写入被拒绝 · {s.sink} · {s.target}"
    if reminder:
        title = f"🔁 仍未恢复(提醒 {reminder}) · " + title
    pairs = [("目标", f"{s.sink} / {s.target}"), ("时间", when(s.at, tz))]
    elements = [
        _fields(pairs),
        _md(f"**原因**\n{_clip(s.reason)}"),
        _md(f"**记录**\n{_clip(s.record_key, 300)}"),
    ]
    return card("red", title, elements, footer)


def lifecycle_card(events: Sequence[ServiceLifecycle], *, tz: str, footer: str) -> Card:
    """System start or stop (blue): which services, on which instance, when."""
    starting = all(e.state == "started" for e in events)
    title = "ℹ️ 系统启动" if starting else "ℹ️ 系统停止"
    services = ", ".join(sorted({f"{e.service}" for e in events}))
    instances = ", ".join(sorted({e.instance for e in events}))
    at = max(e.at for e in events)
    pairs = [("服务", services), ("实例", instances), ("时间", when(at, tz))]
    version = next((e.version for e in events if e.version), "")
    if version:
        pairs.append(("版本", version))
    return card("blue", title, [_fields(pairs)], footer)


def recovered_card(subject: str, *, since: int, now: int, tz: str, footer: str, detail: str = "") -> Card:
    """A problem that cleared (green)."""
    pairs = [("对象", subject), ("恢复时间", when(now, tz)), ("故障开始", when(since, tz))]
    elements = [_fields(pairs)]
    if detail:
        elements.append(_md(detail))
    return card("green", f"✅ 已恢复 · {subject}", elements, footer)


def _money(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def _signed(v: float | None, digits: int = 2, suffix: str = "") -> str:
    return "—" if v is None else f"{v:+,.{digits}f}{suffix}"


def _price(v: float) -> str:
    a = abs(v)
    return f"{v:,.{2 if a >= 100 else 4 if a >= 1 else 8}f}"


def _change(v: float | None, pct: float | None) -> str:
    if v is None:
        return "—(当天无快照)"
    arrow = "🔺" if v > 0 else "🔻" if v < 0 else ""
    return f"{arrow}{_signed(v)}({_signed(pct, 2, '%')})"


def report_card(rep: dict[str, Any] | None, r: TaskResult, *, footer: str, page_url: str = "") -> Card:
    """The daily report after a snapshot (blue): net worth, change vs yesterday and last week, movers, failures.

    `rep` is the store's day report (`assetsync report --json`); None when the store cannot be read
    from here, then the card says what the snapshot result said.
    """
    day = (rep or {}).get("date") or r.data_as_of or "-"
    title = f"📊 资产日报 · {day}"
    if rep is None:
        brief = [
            _md(f"**快照**\n{_clip(r.message or '已完成')}"),
            _md("(本实例读不到存储数据库：涨跌榜从略)"),
        ]
        return card("blue", title, brief, footer)
    ccy = rep["base_currency"]
    pairs = [
        (f"总市值 ({ccy})", _money(rep["total_value"])),
        ("较昨日", _change(rep["change_day"], rep["change_day_pct"])),
        ("较上周", _change(rep["change_week"], rep["change_week_pct"])),
        ("总收益", f"{_signed(rep['total_pnl'])}({_signed(rep['pnl_pct'], 2, '%')})"),
        ("总成本", _money(rep["total_cost"])),
        ("持仓数量", str(rep["asset_count"])),
    ]
    elements: list[dict[str, Any]] = [_fields(pairs)]
    movers = rep.get("movers") or []
    if movers:
        lines = [
            f"- **{m['asset']}**{' ' + m['name'] if m['name'] and m['name'] != m['asset'] else ''}: "
            f"{_signed(m['change_pct'], 2, '%')},{_price(m['price'])} {m['currency']}"
            + (f",市值 {_signed(m['value_change'])} {ccy}" if m.get("value_change") is not None else "")
            for m in movers
        ]
        elements.append(_md("**涨跌榜**\n" + "\n".join(lines)))
    failures = rep.get("failures") or []
    if failures:
        lines = [
            f"- **{f['source']}** {task_name(f['task'])}: "
            + ", ".join(f"{STATUS_TEXT[k]} {f[k]} 次" for k in ("failed", "partial") if f.get(k))
            + (f" — {_clip(f['last_message'], 200)}" if f.get("last_message") else "")
            for f in failures
        ]
        elements.append(_md("**当日失败的数据源**\n" + "\n".join(lines)))
    else:
        elements.append(_md("当日数据源:全部成功 ✅"))
    if page_url:
        elements.append(_md(f"[打开资产总览]({page_url})"))
    return card("blue", title, elements, footer)


def price_move_card(m: Move, color: Color, *, tz: str, footer: str, reminder: int = 0) -> Card:
    """A price that moved by at least the configured percent within its window."""
    arrow = "📈 大涨" if m.change_pct > 0 else "📉 大跌"
    title = f"{arrow} {m.asset} {_signed(m.change_pct, 2, '%')} · {m.window_minutes} 分钟内"
    if reminder:
        title = f"🔁 仍在波动(提醒 {reminder}) · " + title
    pairs = [
        ("资产", m.asset),
        ("数据源", m.source),
        ("价格", f"{_price(m.first_price)} → {_price(m.last_price)} {m.currency}"),
        ("涨跌幅", f"{_signed(m.change_pct, 2, '%')}(阈值 ±{m.threshold:g}%)"),
        ("区间", f"{when(m.first_ts, tz)} → {when(m.last_ts, tz)}"),
    ]
    return card(color, title, [_fields(pairs)], footer)


def stale_card(s: Stale, *, tz: str, footer: str, reminder: int = 0) -> Card:
    """Held assets of one source without a price for longer than asset_sync.alerts.stale_price_hours."""
    title = f"⏰ 价格未更新 · {s.source} · {len(s.assets)} 个资产"
    if reminder:
        title = f"🔁 仍未恢复(提醒 {reminder}) · " + title
    lines = [f"- **{a}**: 最后价格 {when(ts, tz)}" for a, ts in s.assets[:MAX_ASSETS]]
    if len(s.assets) > MAX_ASSETS:
        lines.append(f"- … 另有 {len(s.assets) - MAX_ASSETS} 个")
    elements = [
        _fields([("数据源", s.source), ("阈值", f"{s.hours:g} 小时")]),
        _md("**资产**\n" + "\n".join(lines)),
        _md("检查该数据源的同步任务与凭据(asset_sync.alerts.stale_price_hours 可调整阈值)"),
    ]
    return card("orange", title, elements, footer)
