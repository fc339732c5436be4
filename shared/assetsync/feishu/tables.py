"""Finding the project's tables: the configured ids, else the tables named as in CONTRACTS §4."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from assetsync.feishu import errors as fe
from assetsync.feishu.client import FeishuClient
from assetsync.feishu.schema import TABLES, TableRole, TableSpec

if TYPE_CHECKING:
    from assetsync.config import Settings


@dataclass(frozen=True)
class TableIds:
    """The table ids of 持仓, 历史 and 日志 in the configured app."""

    holdings: str
    history: str
    logs: str

    def of(self, role: TableRole) -> str:
        return str(getattr(self, role))


def configured_id(settings: Settings, role: TableRole) -> str:
    return str(getattr(settings.config.asset_sync.feishu.tables, role))


async def resolve_table(client: FeishuClient, settings: Settings, spec: TableSpec) -> str:
    """The id of one table: `asset_sync.feishu.tables.<role>` if set, else the table named as in §4."""
    tid = configured_id(settings, spec.role)
    if tid:
        client.table_names.setdefault(tid, spec.name)
        return tid
    for t in await client.list_tables():
        if t.name == spec.name:
            return t.table_id
    raise fe.FeishuTableNotFound(
        f"no table named {spec.name} in app {client.app_token}: run `assetsync setup-tables` "
        f"or set asset_sync.feishu.tables.{spec.role}",
        table=spec.name,
    )


async def resolve_tables(client: FeishuClient, settings: Settings) -> TableIds:
    """All three table ids (one tables/list call when any id is not configured)."""
    ids: dict[str, str] = {}
    listing: dict[str, str] | None = None
    for spec in TABLES:
        tid = configured_id(settings, spec.role)
        if not tid:
            if listing is None:
                listing = {t.name: t.table_id for t in await client.list_tables()}
            tid = listing.get(spec.name, "")
            if not tid:
                raise fe.FeishuTableNotFound(
                    f"no table named {spec.name} in app {client.app_token}: run `assetsync setup-tables` "
                    f"or set asset_sync.feishu.tables.{spec.role}",
                    table=spec.name,
                )
        client.table_names.setdefault(tid, spec.name)
        ids[spec.role] = tid
    return TableIds(**ids)
