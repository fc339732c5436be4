"""Logging to stderr and to daily files `logs/sync_YYYYMMDD.log`, as the original tool did."""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

from assetsync.secrets import mask_urls

FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s | %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"


class MaskingFormatter(logging.Formatter):
    """The standard formatter, with credentials in URLs (`user:pass@`) shown as `***`, tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_urls(super().format(record))


class DailyFileHandler(logging.Handler):
    """Appends to `<dir>/sync_YYYYMMDD.log`, switching files when the local date changes."""

    def __init__(self, directory: Path, prefix: str = "sync_") -> None:
        super().__init__()
        self.directory = directory
        self.prefix = prefix
        self._day = ""
        self._stream: TextIO | None = None

    def path_for(self, day: str) -> Path:
        return self.directory / f"{self.prefix}{day}.log"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            day = datetime.fromtimestamp(record.created).strftime("%Y%m%d")
            if day != self._day or self._stream is None:
                self._open(day)
            assert self._stream is not None
            self._stream.write(self.format(record) + "\n")
            self._stream.flush()
        except Exception:
            self.handleError(record)

    def _open(self, day: str) -> None:
        if self._stream is not None:
            self._stream.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._stream = self.path_for(day).open("a", encoding="utf-8")
        self._day = day

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        super().close()


def setup_logging(log_dir: Path | None, level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Configure the root logger once per process (called from `__main__` / the CLI)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    fmt = MaskingFormatter(FORMAT, DATEFMT)
    console = logging.StreamHandler(stream or sys.stderr)
    console.setFormatter(fmt)
    root.addHandler(console)
    if log_dir is not None:
        try:
            fh = DailyFileHandler(log_dir)
            fh.setFormatter(fmt)
            root.addHandler(fh)
        except OSError as exc:
            root.warning("file logging off: cannot write %s: %s", log_dir, exc)
    root.setLevel(level.upper())
    # Third-party chatter that would drown our lines at INFO.
    for noisy in ("nats", "httpx", "httpcore", "uvicorn.access", "aiosqlite", "ccxt", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
