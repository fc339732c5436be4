"""Interactive cards for the Feishu group bot: one builder per alert kind (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from assetsync.events import BackupResult, ServiceLifecycle, SinkRejected, TaskResult

Color = Literal["red", "orange", "blue", "green"]
Card = dict[str, Any]

TASK_TITLES = {
    "crypto": "加密货币同步 (crypto_sync)",
    "fund": "基金同步 (fund_sync)",
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
