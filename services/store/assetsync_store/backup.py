"""The backup task: online backups with the SQLite backup API, verification, retention and listing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from assetsync.config import Settings
from assetsync.events import BackupResult, TaskCommand
from assetsync.tasks import now_ms

from assetsync_store import schema

NAME_RE = re.compile(r"^assets_(\d{8}_\d{6})\.db$")


class BackupError(Exception):
    """A backup could not be made or a file is not a usable backup; says why."""


@dataclass(frozen=True)
class BackupInfo:
    """One backup file."""

    path: Path
    taken: datetime
    size_bytes: int


@dataclass(frozen=True)
class BackupOutcome:
    """What `create_backup` did."""

    path: Path
    size_bytes: int
    integrity: str
    removed: list[str]


def integrity(path: Path) -> str:
    """`PRAGMA integrity_check` of a file opened read-only ("ok" when sound)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)[:500]
    finally:
        conn.close()


def create_backup(db_path: Path, backup_dir: Path, keep_days: int, now: datetime) -> BackupOutcome:
    """Copy the live DB (online backup API), check the copy, then apply retention."""
    if not db_path.exists():
        raise BackupError(f"no database at {db_path} to back up")
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"cannot create backup directory {backup_dir}: {exc.strerror}") from exc
    final = backup_dir / f"assets_{now:%Y%m%d_%H%M%S}.db"
    tmp = final.with_name(final.name + ".partial")
    try:
        src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst, pages=4096)
            finally:
                dst.close()
        finally:
            src.close()
        check = integrity(tmp)
        if check != "ok":
            raise BackupError(f"backup copy failed integrity_check: {check}")
        os.replace(tmp, final)
    except (sqlite3.Error, OSError) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BackupError(f"backup to {backup_dir} failed: {reason}") from exc
    except BackupError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    removed = prune(backup_dir, keep_days, now)
    return BackupOutcome(final, final.stat().st_size, "ok", removed)


def list_backups(backup_dir: Path) -> list[BackupInfo]:
    """Backups in the directory, newest first."""
    out: list[BackupInfo] = []
    if not backup_dir.is_dir():
        return out
    for p in backup_dir.iterdir():
        m = NAME_RE.match(p.name)
        if m and p.is_file():
            out.append(BackupInfo(p, datetime.strptime(m.group(1), "%Y%m%d_%H%M%S"), p.stat().st_size))
    return sorted(out, key=lambda b: b.taken, reverse=True)


def prune(backup_dir: Path, keep_days: int, now: datetime) -> list[str]:
    """Delete backups older than `keep_days` (by the time in their name); returns their names."""
    cutoff = now.replace(tzinfo=None) - timedelta(days=keep_days)
    removed = []
    for b in list_backups(backup_dir):
        if b.taken < cutoff:
            with contextlib.suppress(FileNotFoundError):
                b.path.unlink()
            removed.append(b.path.name)
    return removed


def verify_backup(path: Path) -> str:
    """Refuse anything that is not a sound assetsync database; returns a one-line summary."""
    if not path.is_file():
        raise BackupError(f"{path}: no such backup file")
    with path.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise BackupError(f"{path}: not an SQLite database")
    try:
        check = integrity(path)
        if check != "ok":
            raise BackupError(f"{path}: integrity_check failed: {check}")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            counts = {
                t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                for t in ("holdings", "price_history")
                if t in tables
            }
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: unreadable database: {exc}") from exc
    if version < 1 or version > schema.LATEST:
        raise BackupError(
            f"{path}: schema v{version} is not one this assetsync can restore (1..{schema.LATEST})"
        )
    missing = [t for t in schema.TABLES if t not in tables]
    if missing:
        raise BackupError(f"{path}: not an assetsync database (missing tables: {', '.join(missing)})")
    return f"schema v{version}, {counts.get('holdings', 0)} holdings, {counts.get('price_history', 0)} prices"


async def run_backup(settings: Settings, cmd: TaskCommand, started: int, local_now: datetime) -> BackupResult:
    """Back up the database (off the event loop), prune old backups; the outcome as an event."""
    try:
        outcome = await asyncio.to_thread(
            create_backup,
            settings.db_path,
            settings.backup_dir,
            settings.config.asset_sync.database.backup.keep_days,
            local_now,
        )
    except BackupError as exc:
        return BackupResult(
            command_id=cmd.command_id, ok=False, started_at=started, finished_at=now_ms(), error=str(exc)
        )
    return BackupResult(
        command_id=cmd.command_id,
        ok=True,
        started_at=started,
        finished_at=now_ms(),
        path=str(outcome.path),
        size_bytes=outcome.size_bytes,
        integrity=outcome.integrity,
        removed=outcome.removed,
    )


def backup_summary(br: BackupResult) -> str:
    """The one line a backup's 日志 row and the CLI show."""
    if not br.ok:
        return br.error
    removed = f", removed {len(br.removed)} old" if br.removed else ""
    return f"{br.path} ({br.size_bytes / 1e6:.1f} MB, integrity ok{removed})"
