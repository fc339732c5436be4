"""Progress of long tasks (backfills, replays): core-NATS notices a waiting CLI turns into a bar."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, TextIO

from assetsync.runtime import Runtime


def progress_subject(rt: Runtime, task: str) -> str:
    """Not captured by any stream: progress is only for whoever is watching now."""
    return rt.topo.subject("tasks", "progress", "v1", task)


class TaskProgress:
    """Callable `(done, total, what)` a task calls as it goes; publishes at most ~10 notices a second."""

    def __init__(self, rt: Runtime, task: str, command_id: str) -> None:
        self._rt = rt
        self._subject = progress_subject(rt, task)
        self._command_id = command_id
        self._last = 0.0
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, done: int, total: int, what: str) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        body = json.dumps(
            {"command_id": self._command_id, "done": done, "total": total, "what": what}
        ).encode()
        t = asyncio.get_running_loop().create_task(self._rt.nc.publish(self._subject, body))
        self._pending.add(t)
        t.add_done_callback(self._pending.discard)


class ProgressBar:
    """Renders progress notices on a terminal (one redrawn line) or as occasional plain lines."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self._label = label
        self._out = stream or sys.stderr
        self._width = width
        self._tty = self._out.isatty()
        self._shown = -1

    def update(self, notice: dict[str, Any]) -> None:
        done, total, what = (
            int(notice.get("done", 0)),
            int(notice.get("total", 0)),
            str(notice.get("what", "")),
        )
        if total <= 0:
            return
        pct = min(100, done * 100 // total)
        filled = self._width * pct // 100
        line = (
            f"{self._label}: {what} [{'#' * filled}{'.' * (self._width - filled)}] {done}/{total} {pct:3d}%"
        )
        if self._tty:
            self._out.write("\r" + line + ("\n" if done >= total else ""))
        elif pct // 25 != self._shown // 25 or done >= total:
            self._out.write(line + "\n")
        self._shown = pct
        self._out.flush()
