"""The OpenAPI 3.0 document of every route (served at /openapi.json, fuzzed by schemathesis in CI)."""

from __future__ import annotations

from typing import Any

import msgspec

from assetsync_sync_gateway.live_settings import ReceiverPatch, SenderPatch

_ERR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_CODE = {
    "name": "code",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "endpoint code, e.g. PB001",
}
_WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean"},
    "description": "block until done and answer 200 with the results",
}


def _openapi30(schema: Any) -> Any:
    """JSON Schema (msgspec) → OpenAPI 3.0: `anyOf: [X, {type: null}]` becomes X with `nullable: true`,
    numeric exclusive bounds become boolean ones."""
    if isinstance(schema, list):
        return [_openapi30(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _openapi30(v) for k, v in schema.items()}
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out[bound], bool):
            out[plain], out[bound] = out[bound], True  # 3.0 spells `> 0` as minimum 0 + exclusive
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        if len(rest) == 1:
            del out["anyOf"]
            out = {**rest[0], **out, "nullable": True}
    return out


def _obj(props: dict[str, Any] | None = None, *, extra: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": extra}
    if props:
        out["properties"] = props
    return out


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _ERR for c in codes}


def openapi_document() -> dict[str, Any]:
    sender: list[dict[str, list[str]]] = [{"senderToken": []}, {}]
    admin: list[dict[str, list[str]]] = [{"adminToken": []}, {}]
    common = _errors(401, 403, 429)
    record = _obj(
        {
            "seq": {"type": "integer"},
            "origin": {"type": "string"},
            "oseq": {"type": "integer", "description": "the origin site's sequence (relayed records only)"},
            "data": {"description": "the record itself"},
        }
    )
    page = _obj(
        {
            "code": {"type": "string"},
            "records": {"type": "array", "items": record},
            "next_cursor": {"type": "string"},
            "has_more": {"type": "boolean"},
        }
    )
    # The settings API's request bodies: derived from the types that validate them (one set of rules).
    (sender_patch, receiver_patch), patch_schemas = msgspec.json.schema_components(
        [SenderPatch, ReceiverPatch], ref_template="#/components/schemas/{name}"
    )
    p = "/api/data-sync"
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "assetsync sync gateway (数据沟通备份系统)",
            "version": "1",
            "description": (
                "Sender feeds, receiver control, web manager. Auth per CONTRACTS §5; every POST is "
                "Content-Type: application/json (else 415) and a foreign Origin / Sec-Fetch-Site gets 403 (§5.1)."
            ),
        },
        "components": {
            "securitySchemes": {
                "senderToken": {"type": "http", "scheme": "bearer"},
                "adminToken": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Error": _obj({"error": {"type": "string"}}),
                "Page": page,
                **{name: _openapi30(schema) for name, schema in patch_schemas.items()},
            },
        },
        "paths": {
            f"{p}/sender/status": {
                "get": {
                    "summary": "sender statistics (发送端状态)",
                    "security": sender,
                    "responses": {"200": _json(_obj()), **common},
                }
            },
            f"{p}/sender/catalog": {
                "get": {
                    "summary": "the data catalog (数据目录)",
                    "security": sender,
                    "parameters": [
                        {"name": "q", "in": "query", "required": False, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": _json(_obj()), **common},
                }
            },
            f"{p}/sender/data/{{code}}": {
                "get": {
                    "summary": "one page of an endpoint's feed",
                    "security": sender,
                    "parameters": [
                        _CODE,
                        {"name": "since", "in": "query", "required": False, "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                        },
                        {
                            "name": "latest",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                            "description": "the newest n records (not with since); next_cursor follows them",
                        },
                        {
                            "name": "exclude_origin",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Page"}),
                        "304": {"description": "not modified (If-None-Match matched)"},
                        **common,
                        **_errors(400, 404, 409),
                        "409": {
                            **_ERR,
                            "description": "the cursor is from an older epoch, or below the low-water mark"
                            " (X-Feed-Low-Water: records up to it are no longer kept)",
                        },
                        "503": {
                            **_ERR,
                            "description": "the feed's source has records the feed cannot read yet (Retry-After)",
                        },
                    },
                }
            },
            f"{p}/sender/batch": {
                "post": {
                    "summary": "pages of several endpoints in one call",
                    "security": sender,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": _obj(
                                    {
                                        "requests": {
                                            "type": "array",
                                            "items": _obj(
                                                {
                                                    "code": {"type": "string"},
                                                    "since": {"type": "string"},
                                                    "limit": {"type": "integer"},
                                                },
                                                extra=False,
                                            ),
                                        },
                                        "exclude_origin": {"type": "string"},
                                    },
                                    extra=False,
                                )
                            }
                        },
                    },
                    "responses": {"200": _json(_obj()), **common, **_errors(400, 413)},
                }
            },
            f"{p}/sender/config": {
                "get": {
                    "summary": "sender settings (no secrets)",
                    "security": admin,
                    "responses": {"200": _json(_obj()), **common},
                },
                "post": {
                    "summary": "change sender settings (validated, persisted)",
                    "security": admin,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": sender_patch}},
                    },
                    "responses": {"200": _json(_obj()), **common, **_errors(400, 413)},
                },
            },
            f"{p}/receiver/status": {
                "get": {
                    "summary": "receiver statistics (接收端状态)",
                    "security": admin,
                    "responses": {"200": _json(_obj()), **common},
                }
            },
            f"{p}/receiver/config": {
                "get": {
                    "summary": "receiver settings (no secrets)",
                    "security": admin,
                    "responses": {"200": _json(_obj()), **common},
                },
                "post": {
                    "summary": "change receiver settings (validated, persisted)",
                    "security": admin,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": receiver_patch}},
                    },
                    "responses": {"200": _json(_obj()), **common, **_errors(400, 413)},
                },
            },
            f"{p}/receiver/sync-all": {
                "post": {
                    "summary": "sync every remote endpoint now (立即全量同步)",
                    "security": admin,
                    "parameters": [_WAIT],
                    "responses": {
                        "200": _json(_obj()),
                        "202": _json(_obj(), "started"),
                        **common,
                        **_errors(400, 409),
                    },
                }
            },
            f"{p}/receiver/sync/{{code}}": {
                "post": {
                    "summary": "sync one endpoint now",
                    "security": admin,
                    "parameters": [_CODE, _WAIT],
                    "responses": {
                        "200": _json(_obj()),
                        "202": _json(_obj(), "started"),
                        **common,
                        **_errors(400, 404, 409),
                    },
                }
            },
            f"{p}/receiver/start-auto-sync": {
                "post": {
                    "summary": "start auto-sync",
                    "security": admin,
                    "responses": {"200": _json(_obj()), **common},
                }
            },
            f"{p}/receiver/stop-auto-sync": {
                "post": {
                    "summary": "stop auto-sync",
                    "security": admin,
                    "responses": {"200": _json(_obj()), **common},
                }
            },
            f"{p}/logs": {
                "get": {
                    "summary": "recent gateway logs (系统/同步/错误日志)",
                    "security": admin,
                    "parameters": [
                        {
                            "name": "kind",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["system", "sync", "error"]},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                    ],
                    "responses": {"200": _json(_obj()), **common, **_errors(400)},
                }
            },
            "/data-sync-manager": {
                "get": {
                    "summary": "web manager page",
                    "responses": {
                        "200": {
                            "description": "HTML",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "health",
                    "responses": {"200": _json(_obj()), "503": _json(_obj(), "not ready")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of the gateway only (portfolio values: metrics.port)",
                    "responses": {
                        "200": {
                            "description": "text",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": _json(_obj())}}},
            **portfolio_paths(admin, common),
        },
    }
    for ops in doc["paths"].values():
        post = ops.get("post")
        if post is not None:  # state changes are JSON only (CSRF): `{}` where nothing else is needed
            post.setdefault(
                "requestBody", {"required": True, "content": {"application/json": {"schema": _obj()}}}
            )
            post["responses"].update(_errors(415))
    return doc


def _range(default: str, values: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": "range",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": list(values), "default": default},
        "description": "1w = 7 days, 1m = 31, 3m = 92, 1y = 366, all",
    }


def portfolio_paths(admin: list[dict[str, list[str]]], common: dict[str, Any]) -> dict[str, Any]:
    """/portfolio and its read-only JSON (admin access, like the manager's API; the store read-only)."""
    num = {"type": "number", "nullable": True}
    holding = _obj(
        {
            **{k: {"type": "string"} for k in ("asset", "name", "source", "asset_type", "currency")},
            **{k: num for k in ("price", "value", "avg_cost", "total_cost", "pnl", "pnl_pct")},
            "quantity": {"type": "number"},
            "as_of": {"type": "integer", "description": "ms of the holding's last update (its price time)"},
            "value_base": {**num, "description": "value in the base currency (null: unpriced or no rate)"},
            "weight": {**num, "description": "percent of the priced total"},
            "unpriced": {"type": "boolean"},
            "stale": {"type": "boolean", "description": "price older than stale_price_hours (funds: ≥ 96 h)"},
            "no_rate": {
                "type": "boolean",
                "description": "no rate to the base currency (asset_sync.fx_rates)",
            },
        }
    )
    share = _obj({"key": {"type": "string"}, "label": {"type": "string"}, "value": {"type": "number"},
                  "percent": {"type": "number"}})  # fmt: skip
    overview = _obj(
        {
            "generated_at": {"type": "integer"},
            "base_currency": {"type": "string"},
            "rates": _obj(),
            "stale_hours": {"type": "number"},
            "totals": _obj(),
            "holdings": {"type": "array", "items": holding},
            "allocation": _obj(
                {"by_type": {"type": "array", "items": share}, "by_asset": {"type": "array", "items": share}}
            ),
            "sources": {"type": "array", "items": _obj()},
            "last_snapshot": {"type": "array", "nullable": True, "items": {}},
        }
    )
    series = _obj(
        {
            "range": {"type": "string"},
            "base_currency": {"type": "string"},
            "count": {"type": "integer", "description": "snapshots in the range (before downsampling)"},
            "columns": {"type": "array", "items": {"type": "string"}},
            "points": {"type": "array", "items": {"type": "array", "items": {}}},
        }
    )
    prices = _obj(
        {
            "asset": {"type": "string"},
            "currency": {"type": "string"},
            "avg_cost": num,
            "symbol": {"type": "string"},
            "interval": {"type": "string", "description": "kline interval, or `price` for observed prices"},
            "points": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        }
    )
    errors = {**common, **_errors(503)}
    return {
        "/portfolio": {
            "get": {
                "summary": "资产总览: the portfolio page (asks for the admin token when needed)",
                "responses": {
                    "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
                },
            }
        },
        "/api/portfolio/overview": {
            "get": {
                "summary": "totals, 持仓 rows (unpriced/stale flagged), allocation by type and asset, sources' freshness",
                "security": admin,
                "responses": {"200": _json(overview), **errors},
            }
        },
        "/api/portfolio/networth": {
            "get": {
                "summary": "net worth in the base currency from the daily snapshots (≤ 1000 points)",
                "security": admin,
                "parameters": [_range("all", ("1w", "1m", "3m", "1y", "all"))],
                "responses": {"200": _json(series), **errors, **_errors(400)},
            }
        },
        "/api/portfolio/prices/{asset}": {
            "get": {
                "summary": "a held asset's closes from its klines (else observed prices), with its average cost",
                "security": admin,
                "parameters": [
                    {"name": "asset", "in": "path", "required": True, "schema": {"type": "string"}},
                    _range("3m", ("1w", "1m", "3m", "1y", "all")),
                ],
                "responses": {"200": _json(prices), **errors, **_errors(400, 404)},
            }
        },
        "/api/portfolio/report": {
            "get": {
                "summary": "a day's report: net worth, change vs yesterday and last week, movers, failed sources",
                "security": admin,
                "parameters": [
                    {
                        "name": "date",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "format": "date"},
                        "description": "YYYY-MM-DD (default: the latest snapshot)",
                    }
                ],
                "responses": {"200": _json(_obj()), **errors, **_errors(400, 404)},
            }
        },
    }
