"""`assetsync setup-tables` (Feishu part): find or create 持仓/历史/日志 and add any missing field."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from assetsync.feishu import errors as fe
from assetsync.feishu.client import FeishuClient, FieldInfo
from assetsync.feishu.schema import TABLES, TYPE_NAMES, TableSpec
from assetsync.feishu.tables import configured_id

if TYPE_CHECKING:
    from assetsync.config import Settings

log = logging.getLogger("assetsync.feishu")


@dataclass
class TableReport:
    """What setup-tables did to one table."""

    spec: TableSpec
    table_id: str = ""
    created: bool = False
    added: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        head = f"{self.spec.name} ({self.table_id})"
        if self.created:
            out = [f"{head}: created with fields {', '.join(self.spec.names)}"]
        elif self.added:
            out = [f"{head}: found; added missing fields {', '.join(self.added)}"]
        else:
            out = [f"{head}: found; all {len(self.spec.fields)} fields present"]
        out.extend(f"  warning: {w}" for w in self.warnings)
        return out


@dataclass
class SetupReport:
    """The printable outcome of setup-tables."""

    tables: list[TableReport] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(t.created or t.added for t in self.tables)

    def text(self) -> str:
        lines = [line for t in self.tables for line in t.lines()]
        lines.append("Feishu tables ready" + ("" if self.changed else " (nothing to change)"))
        return "\n".join(lines)


def _check_field(spec_field_type: int, options: tuple[str, ...], have: FieldInfo) -> list[str]:
    out = []
    if have.type != spec_field_type:
        out.append(
            f"field {have.name} is a {TYPE_NAMES.get(have.type, str(have.type))} field, expected "
            f"{TYPE_NAMES.get(spec_field_type, str(spec_field_type))}; left as it is (change its type in Feishu)"
        )
    elif options:
        missing = [o for o in options if o not in have.option_names()]
        if missing:
            out.append(
                f"single select {have.name} lacks option(s) {', '.join(missing)}; Feishu adds them on first write"
            )
    return out


async def setup_tables(settings: Settings, client: FeishuClient) -> SetupReport:
    """Find or create 持仓/历史/日志 with every §4 field; add missing fields; never touch other fields or rows."""
    report = SetupReport()
    listing = {t.name: t.table_id for t in await client.list_tables()}
    for spec in TABLES:
        tr = TableReport(spec)
        report.tables.append(tr)
        tid = configured_id(settings, spec.role) or listing.get(spec.name, "")
        if not tid:
            tr.table_id = await client.create_table(spec.name, spec.fields)
            tr.created = True
            log.info("setup-tables: created %s (%s)", spec.name, tr.table_id)
            continue
        tr.table_id = tid
        client.table_names.setdefault(tid, spec.name)
        have = {f.name: f for f in await client.list_fields(tid)}
        for f in spec.fields:
            existing = have.get(f.name)
            if existing is None:
                await client.create_field(tid, f)
                tr.added.append(f.name)
                log.info("setup-tables: added field %s to %s (%s)", f.name, spec.name, tid)
            else:
                tr.warnings.extend(_check_field(f.type, f.options, existing))
    return report


async def run_setup_tables(settings: Settings) -> int:
    """`assetsync setup-tables` (Feishu part): prints the report; exit 0 ok, 1 Feishu error, 2 not configured."""
    if not settings.feishu_on():
        print(
            "setup-tables: Feishu is off: set mcp_server.app_id, mcp_server.app_secret and "
            "asset_sync.feishu.app_token (and leave asset_sync.feishu.enabled unset or true)"
        )
        return 2
    async with FeishuClient.from_settings(settings) as client:
        try:
            report = await setup_tables(settings, client)
        except fe.FeishuError as exc:
            print(f"setup-tables: {exc}")
            return 1
    print(report.text())
    return 0
