"""Recent gateway log lines kept in memory for the manager page's 日志 tab."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from assetsync.secrets import mask_urls


class LogBuffer(logging.Handler):
    """A bounded ring of formatted log records (secrets never reach logs: they are Secret objects)."""

    def __init__(self, capacity: int = 1000) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[dict[str, Any]] = deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:
            msg = str(record.msg)
        self.lines.append(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
                "level": record.levelname,
                "logger": record.name,
                "message": mask_urls(msg)[:2000],
            }
        )

    def recent(self, *, min_level: int = logging.INFO, limit: int = 200) -> list[dict[str, Any]]:
        out = [e for e in self.lines if logging.getLevelName(e["level"]) >= min_level]
        return out[-limit:][::-1]
