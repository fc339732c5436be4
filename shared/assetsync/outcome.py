"""How a task run reads to people: a count always comes with the reason for what is missing."""

from __future__ import annotations

from collections.abc import Sequence

from assetsync.events import AssetError, TaskResult

# How the kinds of AssetError read in a summary line.
KIND_TEXT = {"failed": "failed", "unpriced": "unpriced", "skipped": "skipped"}
SHOWN = 5


def _names(errors: Sequence[AssetError]) -> str:
    shown = [f"{e.asset} ({e.reason})" for e in errors[:SHOWN]]
    more = f" … +{len(errors) - SHOWN} more" if len(errors) > SHOWN else ""
    return ", ".join(shown) + more


def missing(r: TaskResult) -> str:
    """Why `records` is short of `total` (and what was left out): per kind, the assets and reasons."""
    parts = []
    for kind, label in KIND_TEXT.items():
        errs = [e for e in r.errors if e.kind == kind]
        if errs:
            parts.append(f"{len(errs)} {label}: {_names(errs)}")
    if r.dust:
        shown = ", ".join(r.dust[:10]) + (f" … +{len(r.dust) - 10} more" if len(r.dust) > 10 else "")
        parts.append(f"{len(r.dust)} dust hidden: {shown}")
    return "; ".join(parts)


def count_text(r: TaskResult) -> str:
    """`8/9` plus the reason for the missing one, e.g. `8/9 (1 unpriced: XYZ (no active market))`."""
    counts = f"{r.records}/{r.total}" if r.total else str(r.records)
    why = missing(r)
    short = r.total > r.records
    if short and not why:
        why = r.message or "no reason reported"
    return f"{counts} ({why})" if why and (short or r.dust) else counts
