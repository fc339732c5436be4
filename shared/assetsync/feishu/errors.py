"""Typed Feishu errors: each says which table, field and record, and whether a retry can help."""

from __future__ import annotations

from typing import Final

# Open Platform codes the client reacts to.
TOKEN_CODES: Final = frozenset({99991661, 99991663, 99991664, 99991668, 99991677})
RATE_LIMIT: Final = 99991400
TOO_MANY_REQUEST: Final = 1254290
WRITE_CONFLICT: Final = 1254291
DATA_NOT_READY: Final = 1254607
BUSY_CODES: Final = frozenset({TOO_MANY_REQUEST, WRITE_CONFLICT, DATA_NOT_READY, 1254036, 1255040})
SERVER_CODES: Final = frozenset({1254002, 1254200, 1255001, 1255002, 1255003, 1255004, 1255005})
FIELD_NAME_NOT_FOUND: Final = 1254045
TABLE_NOT_FOUND: Final = 1254041
RECORD_NOT_FOUND: Final = 1254043
APP_NOT_FOUND: Final = 1254040
FIELD_CONV_CODES: Final = frozenset(range(1254060, 1254075))
BAD_CREDENTIALS: Final = frozenset({10003, 10014})


class FeishuError(Exception):
    """A Feishu call failed. `transient` errors may succeed later; the others will not."""

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int = 0,
        table: str = "",
        field: str = "",
        record: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.table = table
        self.field = field
        self.record = record
        self.retry_after = retry_after
        where = ", ".join(
            p
            for p in (
                f"table {table}" if table else "",
                f"field {field!r}" if field else "",
                f"record {record}" if record else "",
            )
            if p
        )
        text = f"{message} ({where})" if where else message
        if code:
            text = f"{text} [code {code}]"
        super().__init__(text)


class FeishuUnavailable(FeishuError):
    """Feishu could not be reached or answered 5xx / timed out, after the client's retries."""

    transient = True


class FeishuRateLimited(FeishuError):
    """Feishu kept rate-limiting (99991400 / 1254290) after the client's retries."""

    transient = True


class FeishuConflict(FeishuError):
    """Concurrent writes to one table (1254291) persisted after the client's retries."""

    transient = True


class FeishuAuthError(FeishuError):
    """The tenant access token was refused, or the app credentials are wrong."""

    transient = True


class FeishuBadCredentials(FeishuAuthError):
    """mcp_server.app_id / app_secret were rejected: a user must fix the config."""

    transient = False


class FeishuRejected(FeishuError):
    """Feishu refused the request permanently (bad value, permission, unknown table...)."""


class FeishuFieldNotFound(FeishuRejected):
    """A field name the writer uses does not exist in the table (renamed or deleted by a user)."""


class FeishuTableNotFound(FeishuRejected):
    """The configured table id or app token does not exist."""
