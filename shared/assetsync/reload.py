"""Config reload (SIGHUP to `up`, `assetsync reload`): re-read, validate, apply live, keep the old on error.

Nothing is stopped: consumers keep their deliveries, so no event is lost. Services that can apply a
new config live do so through an optional `reload(settings)` method; keys nobody can apply live are
named as needing a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import msgspec

from assetsync.config import ConfigError, Settings, reload_settings
from assetsync.subjects import Topology

log = logging.getLogger("assetsync.reload")

# Key prefixes a running service applies live, and which service that is.
LIVE: tuple[tuple[str, str], ...] = (
    ("asset_sync.xueqiu.", "collector-fund"),
    ("asset_sync.assets.funds.", "collector-fund"),
    ("asset_sync.scheduler.holidays", "collector-fund"),
    ("asset_sync.binance.", "collector-crypto"),
    ("asset_sync.assets.crypto.", "collector-crypto"),
    ("asset_sync.okx.", "collector-okx"),
    # The watch-list and fear & greed pollers read these each round (`enabled` needs a restart).
    ("market.watchlist", "collector-crypto"),
    ("market.watchlist", "market"),
    ("market.quote", "collector-crypto"),
    ("market.interval_seconds", "collector-crypto"),
    ("market.fear_greed.base_url", "collector-crypto"),
    ("market.fear_greed.interval_seconds", "collector-crypto"),
    ("market.fear_greed.timeout_seconds", "collector-crypto"),
    ("asset_sync.fx.", "store"),
    ("asset_sync.fx_rates", "store"),
    ("asset_sync.base_currency", "store"),
    ("asset_sync.alerts.alert_on_failure", "alerter"),
    ("asset_sync.alerts.alert_on_partial_success", "alerter"),
    ("asset_sync.alerts.min_success_rate", "alerter"),
    ("asset_sync.alerts.reminder_minutes", "alerter"),
)


@runtime_checkable
class Reloadable(Protocol):
    """A service that can take a new config without restarting (between runs)."""

    async def reload(self, settings: Settings) -> None: ...


@dataclass
class ReloadOutcome:
    """What one process did with a reload request."""

    ok: bool
    message: str
    instance: str = ""
    applied: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False).encode()


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs (secrets compare by value, never shown)."""
    if isinstance(old, msgspec.Struct) and type(old) is type(new):
        out: list[str] = []
        for name in old.__struct_fields__:
            out += changed_keys(getattr(old, name), getattr(new, name), f"{prefix}{name}.")
        return out
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def classify(keys: Sequence[str], running: set[str]) -> tuple[list[str], list[str]]:
    """(applied live, needing a restart): live only when the service that applies it is running."""
    applied: list[str] = []
    restart: list[str] = []
    for key in keys:
        owners = {svc for pre, svc in LIVE if key == pre.rstrip(".") or key.startswith(pre)}
        (applied if owners & running else restart).append(key)
    return applied, restart


def reload_subject(topo: Topology) -> str:
    """The core-NATS subject every process of a stack answers reload requests on (no stream holds it)."""
    return topo.subject("ctl", "reload", "v1")


async def reload_into(
    current: Settings, running: dict[str, object], adopt: Callable[[Settings], None], *, instance: str = ""
) -> ReloadOutcome:
    """Re-read `current`'s config; on success adopt it and let each running service apply it."""
    try:
        new = await asyncio.to_thread(reload_settings, current)
    except ConfigError as exc:
        msg = f"reload refused, the running config is kept: {exc}"
        log.error("%s", msg)
        return ReloadOutcome(False, msg, instance)
    keys = changed_keys(current.config, new.config)
    applied, restart = classify(keys, set(running))
    adopt(new)
    failed: list[str] = []
    for name, svc in running.items():
        if isinstance(svc, Reloadable):
            try:
                await svc.reload(new)
            except Exception as exc:  # one service's trouble never undoes the others' reload
                log.exception("reload: %s could not apply the new config", name)
                failed.append(f"{name}: {exc}")
    where = current.config_path or "(defaults)"
    parts = [f"config re-read from {where}"]
    parts.append(f"applied: {', '.join(applied)}" if applied else "no live setting changed")
    if restart:
        parts.append(f"take effect after a restart: {', '.join(restart)}")
    if failed:
        parts.append(f"not applied: {'; '.join(failed)}")
    msg = "; ".join(parts)
    (log.warning if failed else log.info)("reload: %s", msg)
    return ReloadOutcome(not failed, msg, instance, applied, restart)


async def request_reload(
    nc: Any, subject: str, *, wait: float = 5.0, quiet: float = 0.75
) -> list[ReloadOutcome]:
    """Ask every process of the stack to reload; collect answers until `quiet` seconds pass without one."""
    inbox = nc.new_inbox()
    got: asyncio.Queue[ReloadOutcome] = asyncio.Queue()

    async def on_reply(msg: Any) -> None:
        with contextlib.suppress(ValueError, TypeError):
            got.put_nowait(ReloadOutcome(**json.loads(msg.data)))

    sub = await nc.subscribe(inbox, cb=on_reply)
    out: list[ReloadOutcome] = []
    try:
        await nc.publish(subject, b"{}", reply=inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            try:
                out.append(await asyncio.wait_for(got.get(), left if not out else min(left, quiet)))
            except TimeoutError:
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out
