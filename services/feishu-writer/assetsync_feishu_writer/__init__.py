"""The Feishu writer: holdings, history and task logs into the Bitable tables 持仓 / 历史 / 日志.

Modules, one concern each (the house style: pure / sink / wiring, each with its test module):
- rows: pure — the cells each event means (CONTRACTS §4/§6) and the diff against what Feishu holds
- writer: the sink — a batch of events into the fewest Bitable writes, against a row cache
- service: bus wiring — three durable consumers feeding one writer; ack only after Feishu accepted
"""
