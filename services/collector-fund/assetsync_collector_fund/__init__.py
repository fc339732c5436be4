"""The fund collector: ETF quotes and fund NAVs from Xueqiu/Danjuan (pysnowball) as events on the bus.

Modules, one concern each:
- service: runs `fund` task commands and schedules them on Shanghai trading days
- sync: one sync — discover funds, price them (one batched quote + Danjuan NAVs), publish, report
- discovery / feishu_source: which funds — the Feishu 持仓 rows and config `manual`, minus `ignore`
- snowball: the one place that touches pysnowball (configured hosts, bounded in time, off the loop)
- trading_days: XSHG trading days (exchange-calendars), built once, off the event loop
"""
