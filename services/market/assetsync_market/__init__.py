"""The market service: the watch list's polls, klines and prices become the 12 market codes' records.

Modules, one concern each:
- service: bus wiring — a durable consumer of MARKET folding events into the state; a publish loop
- state: what is known per coin (rolling price points, candles by interval, daily baselines)
- feeds: each code's records from the state at a moment (freshness, gaps → insufficient_data)
- indicators: the arithmetic (percent changes, extremes, floor pivots, Parabolic SAR)
- records: the typed data of each code's records
"""
