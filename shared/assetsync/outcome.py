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


def missing(errors: Sequence[AssetError], dust: Sequence[str] = ()) -> str:
    """Per kind, the assets and why (`1 unpriced: XYZ (no market)`), then the dust left out."""
    parts = []
    for kind, label in KIND_TEXT.items():
        errs = [e for e in errors if e.kind == kind]
        if errs:
            parts.append(f"{len(errs)} {label}: {_names(errs)}")
    if dust:
        shown = ", ".join(dust[:10]) + (f" … +{len(dust) - 10} more" if len(dust) > 10 else "")
        parts.append(f"{len(dust)} dust hidden: {shown}")
    return "; ".join(parts)


def headline(r: TaskResult) -> str:
    """`8/9 — <message>`, adding the reason for every missing or hidden asset the message does not name."""
    counts = f"{r.records}/{r.total}" if r.total else str(r.records)
    parts = [r.message] if r.message else []
    unnamed = [e for e in r.errors if e.asset not in r.message]
    dust = [] if "dust" in r.message else list(r.dust)
    extra = missing(unnamed, dust)
    if extra:
        parts.append(extra)
    elif r.total > r.records and not r.errors and not r.message:
        parts.append("no reason reported")
    return f"{counts} — {'; '.join(parts)}" if parts else counts
