"""Fund positions from the Feishu 持仓 table (rows whose 资产类型 is 基金), via the shared Feishu client."""

from __future__ import annotations

from assetsync.config import Settings
from assetsync.feishu.client import FeishuClient
from assetsync.feishu.holdings import read_fund_holdings

from assetsync_collector_fund.discovery import FundPosition


class FeishuFunds:
    """A `FundSource`: quantity and cost as the user keeps them in 持仓."""

    name = "Feishu 持仓 table"

    def __init__(self, client: FeishuClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def positions(self) -> list[FundPosition]:
        rows = await read_fund_holdings(self._client, self._settings)
        return [FundPosition(r.code, r.quantity, r.avg_cost, r.name, "feishu") for r in rows]
