"""The sync gateway (数据沟通备份系统): every catalog endpoint is a cursorable change feed.

Modules, one concern each:
- registry: the catalog (built-in, native seed codes, the registry file) and its validation
- feeds: the sender's feed store (SQLite, sender-assigned sequences, epochs, retention)
- sources / ingest: what fills feeds (JSONL tail, HTTP poll, bus events) and received records -> events
- health_feeds: SYS001 data health and SYS002 collector status, written by the gateway itself
- envelope / compression: the wire format (opaque cursors, pages) and content negotiation
- http_api: the Starlette app — sender and receiver routes, manager, /metrics, /healthz, /openapi.json
- access / security: every access rule in one ASGI middleware / the primitives it uses (tokens, networks)
- live_settings: sender/receiver settings changed through the API, persisted 0600 over the config
- openapi / manager.html / portfolio (+ portfolio.html, static/): the API document and the two pages
- receiver / receiver_store: pulling a remote sender / its records, cursors and synced_data mirror
- stats: the seed's statistics, persisted and exported
- core: the Gateway object that owns all of the above; http_server: serving it with uvicorn
- service: the sync-gateway service (bus wiring); __main__: the gateway alone, without a bus
"""
