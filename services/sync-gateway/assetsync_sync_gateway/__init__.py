"""The sync gateway (数据沟通备份系统): every catalog endpoint is a cursorable change feed.

Modules, one concern each:
- registry: the catalog (built-in endpoints + the registry file) and its validation
- feeds: the sender's feed store (SQLite, sender-assigned sequences, epochs)
- sources / ingest: what fills feeds (JSONL tail, HTTP poll, bus events) and received records -> events
- envelope / compression: the wire format (opaque cursors, pages) and content negotiation
- app / security / runtime_config / openapi / manager.html: the HTTP API, access control, settings, docs, UI
- receiver / received: pulling a remote sender into the local store + synced_data mirror + bus
- stats: the seed's statistics, persisted and exported; gateway: owns all of it; service: bus wiring
"""
