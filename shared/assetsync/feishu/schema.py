"""The three Feishu tables of CONTRACTS §4: names, fields, types and single-select options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

# Bitable field type numbers (Open Platform `type`).
TEXT: Final = 1
NUMBER: Final = 2
SINGLE_SELECT: Final = 3
MULTI_SELECT: Final = 4
DATETIME: Final = 5
CHECKBOX: Final = 7

TYPE_NAMES: Final = {
    TEXT: "text",
    NUMBER: "number",
    SINGLE_SELECT: "single select",
    MULTI_SELECT: "multi select",
    DATETIME: "date",
    CHECKBOX: "checkbox",
}
UI_TYPES: Final = {
    TEXT: "Text",
    NUMBER: "Number",
    SINGLE_SELECT: "SingleSelect",
    MULTI_SELECT: "MultiSelect",
    DATETIME: "DateTime",
    CHECKBOX: "Checkbox",
}

TableRole = Literal["holdings", "history", "logs"]


@dataclass(frozen=True)
class FieldSpec:
    """One field of a table: exact name, type number, options / display format."""

    name: str
    type: int
    options: tuple[str, ...] = ()
    formatter: str = ""  # number display format, e.g. "0.00"
    date_formatter: str = ""  # e.g. "yyyy/MM/dd HH:mm"

    def property(self) -> dict[str, Any] | None:
        """The `property` object the Open Platform expects for this field type."""
        if self.type in (SINGLE_SELECT, MULTI_SELECT):
            return {"options": [{"name": o} for o in self.options]}
        if self.type == NUMBER and self.formatter:
            return {"formatter": self.formatter}
        if self.type == DATETIME:
            return {"date_formatter": self.date_formatter or "yyyy/MM/dd HH:mm", "auto_fill": False}
        return None

    def body(self) -> dict[str, Any]:
        """Request body for fields/create (and table.fields of tables/create)."""
        out: dict[str, Any] = {"field_name": self.name, "type": self.type}
        prop = self.property()
        if prop is not None:
            out["property"] = prop
        return out


@dataclass(frozen=True)
class TableSpec:
    """A table the project owns: its role, exact name and fields (the first is the primary field)."""

    role: TableRole
    name: str
    fields: tuple[FieldSpec, ...] = field(default_factory=tuple)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


# Field names (exactly as in the original tool).
CODE = "资产代码"
NAME = "资产名称"
CURRENCY = "币种"
ASSET_TYPE = "资产类型"
QUANTITY = "数量"
PRICE = "当前价格"
VALUE = "当前市值"
AVG_COST = "成本价"
TOTAL_COST = "总成本"
PNL = "收益"
PNL_PCT = "收益率"
UPDATED = "更新时间"

SNAP_DATE = "快照日期"
TOTAL_VALUE = "总市值"
SNAP_COST = "总成本"
TOTAL_PNL = "总收益"
SNAP_PCT = "收益率"
COUNT = "持仓数量"
SNAP_CURRENCY = "币种"

LOG_TIME = "时间"
LOG_SOURCE = "数据源"
LOG_TASK = "任务类型"
LOG_STATUS = "状态"
LOG_RECORDS = "记录数"
LOG_ERROR = "错误信息"
LOG_DURATION = "耗时"

TYPE_CRYPTO = "加密货币"
TYPE_FUND = "基金"

HOLDINGS = TableSpec(
    "holdings",
    "持仓",
    (
        FieldSpec(CODE, TEXT),
        FieldSpec(NAME, TEXT),
        FieldSpec(CURRENCY, TEXT),
        FieldSpec(ASSET_TYPE, SINGLE_SELECT, options=(TYPE_CRYPTO, TYPE_FUND)),
        FieldSpec(QUANTITY, NUMBER, formatter="0.0000"),
        FieldSpec(PRICE, NUMBER, formatter="0.0000"),
        FieldSpec(VALUE, NUMBER, formatter="0.00"),
        FieldSpec(AVG_COST, NUMBER, formatter="0.0000"),
        FieldSpec(TOTAL_COST, NUMBER, formatter="0.00"),
        FieldSpec(PNL, NUMBER, formatter="0.00"),
        FieldSpec(PNL_PCT, NUMBER, formatter="0.00"),
        FieldSpec(UPDATED, DATETIME, date_formatter="yyyy/MM/dd HH:mm"),
    ),
)
HISTORY = TableSpec(
    "history",
    "历史",
    (
        FieldSpec(SNAP_DATE, DATETIME, date_formatter="yyyy/MM/dd"),
        FieldSpec(TOTAL_VALUE, NUMBER, formatter="0.00"),
        FieldSpec(SNAP_COST, NUMBER, formatter="0.00"),
        FieldSpec(TOTAL_PNL, NUMBER, formatter="0.00"),
        FieldSpec(SNAP_PCT, NUMBER, formatter="0.00"),
        FieldSpec(COUNT, NUMBER, formatter="0"),
        FieldSpec(SNAP_CURRENCY, TEXT),
    ),
)
LOGS = TableSpec(
    "logs",
    "日志",
    (
        FieldSpec(LOG_TIME, DATETIME, date_formatter="yyyy/MM/dd HH:mm"),
        FieldSpec(LOG_SOURCE, TEXT),
        FieldSpec(LOG_TASK, TEXT),
        FieldSpec(LOG_STATUS, SINGLE_SELECT, options=("success", "partial", "failed")),
        FieldSpec(LOG_RECORDS, NUMBER, formatter="0"),
        FieldSpec(LOG_ERROR, TEXT),
        FieldSpec(LOG_DURATION, NUMBER, formatter="0.00"),
    ),
)
TABLES: Final[tuple[TableSpec, ...]] = (HOLDINGS, HISTORY, LOGS)
