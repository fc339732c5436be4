"""Sender/receiver settings changed at run time: validated, persisted atomically, overlaying the config file.

The overlay lives in `<data dir>/gateway/runtime_config.json` (mode 0600: it may hold tokens); keys
it holds win over the config file's `sync_gateway.sender|receiver` values. GET never shows a secret.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
from assetsync.config import (
    RateLimit,
    ReceiverConf,
    RemoteUrl,
    SenderConf,
    SyncGatewayConf,
    SyncInterval,
    TokenText,
    exposure_problem,
)
from assetsync.files import atomic_write
from assetsync.secrets import Secret, mask_urls
from assetsync.validation import error_key

from assetsync_sync_gateway.security import Network, NetworkListError, parse_networks

log = logging.getLogger("assetsync.gateway.config")


class ConfigPatchError(ValueError):
    """A rejected settings change, naming the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class SenderPatch(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A change to `sync_gateway.sender` (absent keys keep their value; "" clears a token)."""

    enabled: bool | None = None
    auth_token: TokenText | None = None
    next_auth_token: TokenText | None = None
    allowed_ips: list[str] | None = None
    rate_limit: RateLimit | None = None


class ReceiverPatch(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A change to `sync_gateway.receiver` (absent keys keep their value)."""

    enabled: bool | None = None
    remote_url: RemoteUrl | None = None
    auth_token: TokenText | None = None
    sync_interval: SyncInterval | None = None
    auto_sync: bool | None = None


class Overlay(msgspec.Struct, omit_defaults=True):
    sender: SenderPatch = msgspec.field(default_factory=SenderPatch)
    receiver: ReceiverPatch = msgspec.field(default_factory=ReceiverPatch)


_SECRET_FIELDS = frozenset({"auth_token", "next_auth_token"})


def _decode_patch(body: bytes, kind: type[SenderPatch] | type[ReceiverPatch], section: str) -> Any:
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ConfigPatchError(section, "the body is not JSON") from exc
    if isinstance(raw, dict) and isinstance(raw.get(section), dict) and len(raw) == 1:
        raw = raw[section]  # the seed's own shape: {"sender": {...}}
    if not isinstance(raw, dict):
        raise ConfigPatchError(section, "expected a JSON object")
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        key, message = error_key(exc, kind)
        raise ConfigPatchError(f"{section}.{key}" if key else section, message) from exc


class RuntimeConfig:
    """The effective sender/receiver settings: config file values with the persisted overlay on top."""

    def __init__(self, base: SyncGatewayConf, path: Path) -> None:
        self.base = base
        self.path = path
        self.overlay = Overlay()
        self.version = 0
        try:
            self.overlay = msgspec.json.decode(path.read_bytes(), type=Overlay)
        except FileNotFoundError:
            pass
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("ignoring unreadable runtime settings %s: %s", path, exc)
        self._apply()

    def _apply(self) -> None:
        s, r = self.overlay.sender, self.overlay.receiver
        self.sender: SenderConf = _merge(self.base.sender, s)
        self.receiver: ReceiverConf = _merge(self.base.receiver, r)
        self.allowed: tuple[Network, ...] = parse_networks(
            self.sender.allowed_ips, "sync_gateway.sender.allowed_ips"
        )
        # Looked up on every sender request: computed once per change.
        self._tokens = tuple(
            t for t in (self.sender.auth_token.get(), self.sender.next_auth_token.get()) if t
        )
        self.version += 1

    def sender_tokens(self) -> tuple[str, ...]:
        return self._tokens

    def update_sender(self, body: bytes) -> None:
        patch: SenderPatch = _decode_patch(body, SenderPatch, "sender")
        if patch.allowed_ips is not None:
            try:
                parse_networks(patch.allowed_ips, "sender.allowed_ips")
            except NetworkListError as exc:
                raise ConfigPatchError("sender.allowed_ips", str(exc).split(": ", 1)[1]) from exc
        combined = _combine(self.overlay.sender, patch)
        after = _merge(self.base.sender, combined)
        problem = exposure_problem(
            self.base.host, after.enabled, bool(after.auth_token or after.next_auth_token)
        )
        if problem:
            raise ConfigPatchError("sender.auth_token", problem)
        self.overlay.sender = combined
        self._persist()

    def update_receiver(self, body: bytes) -> None:
        patch: ReceiverPatch = _decode_patch(body, ReceiverPatch, "receiver")
        if patch.remote_url is not None:
            patch.remote_url = patch.remote_url.rstrip("/")
        self.overlay.receiver = _combine(self.overlay.receiver, patch)
        self._persist()

    def _persist(self) -> None:
        data = msgspec.json.encode(self.overlay)
        atomic_write(self.path, data)  # 0600 from the first byte: it may hold tokens
        self._apply()

    def public(self) -> dict[str, Any]:
        """Both sections for GET: secrets replaced by whether they are set."""
        s, r = self.sender, self.receiver
        return {
            "sender": {
                "enabled": s.enabled,
                "auth_token_set": bool(s.auth_token),
                "next_auth_token_set": bool(s.next_auth_token),
                "allowed_ips": list(s.allowed_ips),
                "rate_limit": s.rate_limit,
            },
            "receiver": {
                "enabled": r.enabled,
                "remote_url": mask_urls(r.remote_url),
                "auth_token_set": bool(r.auth_token),
                "sync_interval": r.sync_interval,
                "auto_sync": r.auto_sync,
            },
        }


def _combine(old: Any, new: Any) -> Any:
    changes = {f: getattr(new, f) for f in new.__struct_fields__ if getattr(new, f) is not None}
    return msgspec.structs.replace(old, **changes)


def _merge(base: Any, patch: Any) -> Any:
    changes: dict[str, Any] = {}
    for f in patch.__struct_fields__:
        v = getattr(patch, f)
        if v is None:
            continue
        changes[f] = Secret(v) if f in _SECRET_FIELDS else v
    return msgspec.structs.replace(base, **changes)
