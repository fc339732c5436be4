"""The seed's 30 endpoint codes (seed 003 编码表): names, categories, paths, intervals, and who produces each.

One table for the gateway's catalog and for every producer. `part` says where a code's records come
from: `market` (the market service, from the watch list's prices and klines), `okx` (collector-okx;
`okx_public` needs no API key), `sentiment` (fear & greed), `system` (the gateway's own health
feeds) or `upstream` (the original host's strategy outputs: a registry `http` source).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Part = Literal["market", "okx_public", "okx", "sentiment", "system", "upstream"]


@dataclass(frozen=True)
class SeedEndpoint:
    """One of the seed's endpoint codes, with the seed's fields."""

    code: str
    name: str
    api_path: str
    category: str
    category_name: str
    interval_seconds: float
    part: Part
    description: str


def _e(
    code: str, name: str, path: str, category: str, cname: str, interval: float, part: Part, desc: str
) -> SeedEndpoint:
    return SeedEndpoint(code, name, path, category, cname, interval, part, desc)


# A table: one endpoint per entry, in the seed's order.
# fmt: off
SEED_ENDPOINTS: tuple[SeedEndpoint, ...] = (
    _e("PT001", "最新价格追踪", "/api/coin-price-tracker/latest", "price_tracker", "价格追踪", 60, "market",
       "观察列表每个币种的最新价格"),
    _e("PT002", "价格追踪历史", "/api/coin-price-tracker/history", "price_tracker", "价格追踪", 60, "market",
       "观察列表价格的历史记录（每次采样一条）"),
    _e("PS001", "最新价格速度", "/api/price-speed/latest", "price_speed", "价格速度", 60, "market",
       "每个币种 1/5/15 分钟的涨跌幅（%）"),
    _e("PB001", "价格基准数据", "/api/price-comparison/list", "price_baseline", "价格基准", 600, "market",
       "当前价格与日开盘价、7 日均价的比较"),
    _e("SAR001", "SAR当前周期", "/api/sar/current-cycle/{coin}", "sar_data", "SAR数据", 60, "market",
       "每个币种抛物线 SAR 的当前周期（方向、起点、K 线数、加速因子）"),
    _e("SAR002", "SAR偏离统计", "/api/sar-bias/stats", "sar_bias", "SAR偏离", 3600, "market",
       "价格相对 SAR 的偏离统计"),
    _e("SAR003", "SAR斜率数据", "/api/sar-slope/current-cycle/{coin}", "sar_slope", "SAR斜率", 60, "market",
       "每个币种当前 SAR 周期的斜率"),
    _e("AN001", "锚定利润最新", "/api/anchor-profit/latest", "anchor_profit", "锚定利润", 300, "upstream",
       "原系统锚定策略的最新利润（上游数据）"),
    _e("AN002", "锚定利润历史", "/api/anchor-profit/history", "anchor_profit", "锚定利润", 300, "upstream",
       "原系统锚定策略的利润历史（上游数据）"),
    _e("AN003", "锚定系统状态", "/api/anchor-system/status", "anchor_system", "锚定系统", 60, "upstream",
       "原系统锚定策略的运行状态（上游数据）"),
    _e("AN004", "锚定系统持仓", "/api/anchor-system/current-positions", "anchor_system", "锚定系统", 60,
       "upstream", "原系统锚定策略的当前持仓（上游数据）"),
    _e("OKX001", "OKX市场行情", "/api/okx-trading/market-tickers", "okx_trading", "OKX交易", 5, "okx_public",
       "OKX 现货行情（公开数据）"),
    _e("OKX002", "OKX持仓列表", "/api/okx-trading/positions", "okx_positions", "OKX持仓", 10, "okx",
       "OKX 账户持仓"),
    _e("OKX003", "OKX挂单列表", "/api/okx-trading/pending-orders", "okx_orders", "OKX订单", 10, "okx",
       "OKX 未成交挂单"),
    _e("OKX004", "OKX交易日志", "/api/okx-trading/logs", "okx_trading", "OKX交易", 60, "okx",
       "OKX 成交明细"),
    _e("OKX005", "OKX账户限额", "/api/okx-trading/account-limit", "okx_account", "OKX账户", 300, "okx",
       "OKX 账户配置、手续费等级与限额"),
    _e("ES001", "逃顶信号最新", "/api/escape-signal/latest", "escape_signal", "逃顶信号", 60, "upstream",
       "原系统逃顶信号（上游数据）"),
    _e("ES002", "逃顶信号统计", "/api/escape-signal/stats", "escape_stats", "逃顶统计", 300, "upstream",
       "原系统逃顶信号统计（上游数据）"),
    _e("EX001", "极值追踪最新", "/api/extreme-value/latest", "extreme_value", "极值追踪", 60, "market",
       "24 小时 / 7 日最高最低价及当前价与它们的距离"),
    _e("PI001", "恐慌指数最新", "/api/panic/latest", "panic_index", "恐慌指数", 3600, "upstream",
       "原系统恐慌指数（上游数据）"),
    _e("FG001", "恐惧贪婪指数", "/api/fear-greed/latest", "fear_greed", "恐惧贪婪", 3600, "sentiment",
       "加密市场恐惧贪婪指数（alternative.me）"),
    _e("CC001", "币种变化最新", "/api/coin-change-tracker/latest", "coin_change", "币种变化", 60, "market",
       "每个币种相对日基准（00:00 Asia/Shanghai）的涨跌"),
    _e("CC002", "币种变化基准", "/api/coin-change-tracker/baseline", "coin_change", "币种变化", 600, "market",
       "每个币种的日基准价"),
    _e("LQ001", "1小时清算数据", "/api/liquidation/1h", "liquidation", "清算数据", 3600, "okx_public",
       "OKX 公开强平数据的一小时汇总"),
    _e("V1V2001", "V1V2最新数据", "/api/v1v2/latest", "v1v2", "V1V2数据", 60, "upstream",
       "原系统 V1V2 数据（上游数据）"),
    _e("SYS001", "数据健康监控", "/api/data-health-monitor/status", "system_health", "系统健康", 300, "system",
       "每个数据源与采集器的新鲜度"),
    _e("SYS002", "采集器状态", "/api/collectors/status", "collector_status", "采集器状态", 60, "system",
       "每个采集器的上次运行、下次运行与错误"),
    _e("SR001", "支撑阻力数据", "/api/support-resistance/latest", "support_resistance", "支撑阻力", 3600,
       "market", "由 1 小时与日 K 线计算的枢轴支撑阻力位"),
    _e("CI001", "加密指数数据", "/api/crypto-index/latest", "crypto_index", "加密指数", 3600, "market",
       "观察列表的指数（已知市值时按市值加权，否则等权）"),
    _e("ME001", "重大事件监控", "/api/major-events/latest", "major_events", "重大事件", 300, "upstream",
       "原系统重大事件监控（上游数据）"),
)
# fmt: on
SEED_BY_CODE: dict[str, SeedEndpoint] = {e.code: e for e in SEED_ENDPOINTS}


def codes_of(*parts: Part) -> tuple[str, ...]:
    """The codes produced by the given parts, in the seed's order."""
    return tuple(e.code for e in SEED_ENDPOINTS if e.part in parts)
