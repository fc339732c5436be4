"""Feishu Open Platform: the Bitable client, table set-up, the 持仓 fund reader and the group bot."""

from assetsync.feishu.client import FeishuClient, FieldInfo, Record, RetryPolicy, TableInfo
from assetsync.feishu.errors import FeishuError
from assetsync.feishu.holdings import FundRow, read_fund_holdings
from assetsync.feishu.setup import run_setup_tables, setup_tables
from assetsync.feishu.tables import TableIds, resolve_tables

__all__ = [
    "FeishuClient",
    "FeishuError",
    "FieldInfo",
    "FundRow",
    "Record",
    "RetryPolicy",
    "TableIds",
    "TableInfo",
    "read_fund_holdings",
    "resolve_tables",
    "run_setup_tables",
    "setup_tables",
]
