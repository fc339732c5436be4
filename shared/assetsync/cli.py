"""The `assetsync` command (CONTRACTS §2)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import importlib.util
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from assetsync import __version__
from assetsync.config import ConfigError, Settings, find_default_config, load_settings, redacted
from assetsync.events import TASK_LABEL, TaskName, TaskResult
from assetsync.logs import setup_logging
from assetsync.progress import ProgressBar
from assetsync.secrets import mask_urls
from assetsync.service import SERVICE_MODULES
from assetsync.stack import (
    Stack,
    StartError,
    StopGuard,
    install_reload_handler,
    install_signal_handlers,
    read_state,
)
from assetsync.subjects import Topology
from assetsync.tasks import TASK_OWNER, TaskTimeout, request_task

log = logging.getLogger("assetsync.cli")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_PARTIAL = 0, 1, 2, 3
TASKS: tuple[TaskName, ...] = ("crypto", "fund", "okx", "snapshot", "backup")
STATUS_EXIT = {"success": EXIT_OK, "partial": EXIT_PARTIAL, "failed": EXIT_FAILED}
SEVERITY = {EXIT_OK: 0, EXIT_PARTIAL: 1, EXIT_FAILED: 2}


# --- argument parsing ------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", "-c", type=Path, help="config.json or config.toml (default: ./config.json|toml)"
    )
    p.add_argument("--data-dir", type=Path, help="data directory (default: ./data)")
    p.add_argument("--log-dir", type=Path, help="log directory (default: ./logs)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assetsync",
        description="Asset sync: Binance and Xueqiu collectors, NATS JetStream, SQLite, Feishu, sync gateway.",
    )
    parser.add_argument("--version", action="version", version=f"assetsync {__version__}")
    parser.add_argument(
        "--run-once", action="store_true", help="alias of `assetsync run-once` (original tool)"
    )
    parser.add_argument("--task", choices=TASKS, help="alias of `assetsync task NAME` (original tool)")
    _common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("up", help="run every service in one process (embedded NATS unless nats.url is set)")
    _common(p)
    p.add_argument(
        "--demo",
        action="store_true",
        help="run against the local emulators with demo data (assetsync-emulators package)",
    )
    p.add_argument(
        "--processes", action="store_true", help="run each service as its own supervised OS process"
    )
    p.add_argument(
        "--replicas",
        default="",
        metavar="NAME=N,…",
        help="with --processes: replicas per service, e.g. collector-crypto=2 (store runs once)",
    )

    p = sub.add_parser("service", help="run one service (for compose, Kubernetes, systemd)")
    p.add_argument("name", choices=list(SERVICE_MODULES), help="which service")
    p.add_argument(
        "--exit-if-off", action="store_true", help="exit 0 at once when the service is off (for supervisors)"
    )
    _common(p)

    p = sub.add_parser("task", help="run one task now and wait until its results are stored")
    p.add_argument("name", choices=TASKS, help="which task")
    p.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for the result (default 900)"
    )
    _common(p)

    p = sub.add_parser("run-once", help="run every task once (exit code: worst of them)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for each result")
    _common(p)

    p = sub.add_parser("setup-tables", help="create the SQLite schema and the Feishu tables (idempotent)")
    _common(p)

    p = sub.add_parser("backup", help="online SQLite backups: create, list, verified restore")
    bsub = p.add_subparsers(dest="backup_command", metavar="ACTION", required=True)
    b = bsub.add_parser("create", help="back up the database now")
    _common(b)
    b = bsub.add_parser("list", help="list backups, newest first")
    _common(b)
    b = bsub.add_parser("restore", help="verify a backup and swap it in atomically")
    b.add_argument("path", type=Path, help="backup file, e.g. data/backups/assets_20250120_010000.db")
    _common(b)

    p = sub.add_parser("replay", help="rebuild a fresh SQLite store from the NATS streams")
    p.add_argument("--since", default="", help="only events from this date or date-time on (local time)")
    p.add_argument("--output", type=Path, help="database to create (default: <data dir>/replay/assets.db)")
    p.add_argument("--force", action="store_true", help="replace the output database if it exists")
    _common(p)

    p = sub.add_parser("check-config", help="validate the configuration (exit 2 on the first problem)")
    _common(p)

    p = sub.add_parser(
        "gen-token", help="print a strong random token (admin_token, sender/receiver auth_token)"
    )
    p.add_argument(
        "--bytes", type=int, default=32, help="random bytes in the token (default 32, at least 16)"
    )
    p = sub.add_parser("reload", help="re-read the config into the running stack (same as SIGHUP to `up`)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the stack's answers")
    _common(p)
    p = sub.add_parser("holdings", help="the 持仓 table from the store (read-only): this site's or another's")
    p.add_argument(
        "--site", default="", help="another site's id (its sync_gateway.site_id); default: this site"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(p)
    p = sub.add_parser("report", help="a day's summary: net worth, change, movers, failed sources")
    p.add_argument("--date", default=None, type=_day, help="YYYY-MM-DD (default: the latest snapshot)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _common(p)
    return parser


def _day(text: str) -> str:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date().isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def load(args: argparse.Namespace, *, demo: bool = False) -> Settings:
    path = args.config if args.config else find_default_config(Path.cwd())
    if args.config and not args.config.exists():
        raise ConfigError("", f"config file {args.config} does not exist")
    # The demo keeps its data apart, so it never mixes with a real store in ./data.
    data_dir = args.data_dir or (Path("data") / "demo" if demo else None)
    return load_settings(path, data_dir=data_dir, log_dir=args.log_dir, demo=demo)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if args.run_once:
            args.command, args.timeout = "run-once", 900.0
        elif args.task:
            args.command, args.name, args.timeout = "task", args.task, 900.0
        else:
            parser.print_help()
            return EXIT_CONFIG
    handler = COMMANDS[args.command]
    try:
        code = handler(args)
    except ConfigError as exc:
        print(f"assetsync: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    sys.stdout.flush()
    return code


# --- commands --------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    s = load(args)
    print(f"config OK: {s.config_path or '(defaults, no file)'}")
    parts = {
        "binance": s.binance_on(),
        "xueqiu": s.xueqiu_on(),
        "feishu": s.feishu_on(),
        "alerts": s.alerts_on(),
        "sync-gateway": s.config.sync_gateway.enabled,
        # OKX runs public-only (tickers, liquidations) with `enabled: true` and no keys.
        "okx": ("account" if s.okx_account_on() else "public") if s.okx_on() else False,
    }
    print(
        "  "
        + ", ".join(f"{k}: {v if isinstance(v, str) else 'on' if v else 'off'}" for k, v in parts.items())
    )
    print(f"  data dir: {s.data_dir}  database: {s.db_path}  backups: {s.backup_dir}")
    print(f"  nats: {mask_urls(s.config.nats.url) or 'embedded'}  timezone: {s.timezone}")
    a = s.config.asset_sync
    manual = ", ".join(f"{k}={v:g}" for k, v in sorted(a.fx_rates.items())) or "none"
    auto = f"{a.fx.source} ({mask_urls(a.fx.base_url)})" if a.fx.source != "none" else "none"
    print(
        f"  fx into {a.base_currency}: manual {manual}; source {auto}; stored rates up to {a.fx.max_age_days:g} days"
    )
    if s.holidays:
        print(f"  market holidays: {', '.join(d.isoformat() for d in s.holidays)}")
    for sch in s.schedules:
        print(f"  schedule {sch.key}: hour={sch.hour} minute={sch.minute}")
    if args.log_level.upper() == "DEBUG":
        print(json.dumps(redacted(s.config), indent=2, ensure_ascii=False))
    return EXIT_OK


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Long-running services run on uvloop (from uvicorn[standard]): ~2.5x the HTTP throughput here."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


# The emulators and demo data are their own distribution, never part of an assetsync install.
DEMO_MISSING = (
    "assetsync: --demo needs the assetsync-emulators package, which is not installed: "
    "run `./run up --demo` from a clone, or `pip install ./services/emulators`"
)


def cmd_up(args: argparse.Namespace) -> int:
    if args.processes or args.replicas:
        return _up_processes(args)
    if args.demo and importlib.util.find_spec("assetsync_emulators") is None:
        print(DEMO_MISSING, file=sys.stderr)
        return EXIT_CONFIG
    settings = load(args, demo=args.demo)
    setup_logging(settings.log_dir, args.log_level)
    return run_loop(_up(settings, list(SERVICE_MODULES)))


def cmd_service(args: argparse.Namespace) -> int:
    settings = load(args)
    setup_logging(settings.log_dir, args.log_level)
    # A child of `up --processes` stops within 7s so its parent, which also stops NATS, stays under 10s.
    return run_loop(_up(settings, [args.name], exit_if_off=args.exit_if_off, stop_budget=7.0))


def _up_processes(args: argparse.Namespace) -> int:
    from assetsync.supervisor import ReplicasError, cli_args_for, parse_replicas, run_processes

    if args.demo:
        print(
            "assetsync: --processes does not combine with --demo (the emulators live in one process)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        replicas = parse_replicas(args.replicas)
    except ReplicasError as exc:
        print(f"assetsync: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    settings = load(args)
    setup_logging(settings.log_dir, args.log_level)
    child_args = cli_args_for(settings.config_path, settings.data_dir, settings.log_dir, args.log_level)
    return asyncio.run(run_processes(settings, replicas, child_args))


async def _up(
    settings: Settings, names: list[str], *, exit_if_off: bool = False, stop_budget: float = 9.0
) -> int:
    stop = asyncio.Event()
    guard = StopGuard(stop_budget)
    install_signal_handlers(stop, guard)
    started = asyncio.get_running_loop().time()
    code = EXIT_OK
    try:
        async with contextlib.AsyncExitStack() as outer:
            if settings.demo:
                from assetsync_emulators.demo import start_demo  # only the demo needs the emulators

                settings = await start_demo(settings, outer)
            stack = Stack(settings, names)
            try:
                await stack.__aenter__()
            except StartError:
                guard.owner = stack.nats
                raise
            guard.owner = stack.nats
            outer.push_async_exit(stack.__aexit__)
            await stack.serve_reload()
            install_reload_handler(stack.reload)
            took = asyncio.get_running_loop().time() - started
            _print_parts(stack)
            if exit_if_off and not stack.running:
                return EXIT_OK
            assert stack.nats is not None
            print(
                f"  nats:      {mask_urls(stack.nats.url)}{' (embedded, supervised)' if stack.nats.server else ''}"
            )
            print(f"  data dir:  {settings.data_dir}")
            print(f"  logs:      {settings.log_dir}")
            if stack.health_server is not None:
                hs = stack.health_server
                print(
                    f"  health:    http://{hs.host}:{hs.port}/healthz  metrics: http://{hs.host}:{hs.port}/metrics"
                )
            if stack.service("sync-gateway") is not None:
                gw = settings.config.sync_gateway
                scheme = "https" if gw.tls_cert else "http"
                print(f"  gateway:   {scheme}://{gw.host}:{gw.port}/data-sync-manager")
                print(f"  portfolio: {scheme}://{gw.host}:{gw.port}/portfolio")
            print(f"ready in {took:.1f}s — press Ctrl+C (or send SIGTERM) to stop", flush=True)
            demo_task = None
            if settings.demo:
                from assetsync_emulators.demo import kick_off

                demo_task = await kick_off(stack)
            failed = stack.failed
            waits = [asyncio.create_task(stop.wait())]
            if failed is not None:
                waits.append(asyncio.create_task(failed.wait()))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            if demo_task is not None:
                demo_task.cancel()
            if failed is not None and failed.is_set() and not stop.is_set():
                assert stack.nats is not None
                print(f"assetsync: nats cannot run: {stack.nats.fatal}", file=sys.stderr, flush=True)
                code = guard.code = EXIT_FAILED
            guard.arm()
            print("stopping: draining consumers…", flush=True)
    except StartError as exc:
        guard.arm()  # the teardown already ran; this only bounds what is left
        print(exc.line(), file=sys.stderr, flush=True)
        return EXIT_FAILED
    finally:
        guard.disarm()
    print("stopped", flush=True)
    return code


def _print_parts(stack: Stack) -> None:
    for p in stack.parts:
        if p.state == "running":
            # A running service may say how it runs (public data only, without keys).
            note = getattr(p.service, "note", "")
            print(f"  {p.name:<17} running{f' — {note}' if note else ''}")
        elif p.state == "off":
            print(f"  {p.name:<17} off — {p.reason}")
        else:
            print(f"  {p.name:<17} absent — {p.reason}")


def _stack_running(settings: Settings) -> bool:
    """True when another process serves NATS for this data dir (or `nats.url` points at a stack)."""
    if settings.config.nats.url:
        return True
    lock = settings.data_dir / "run" / "nats.lock"
    if not lock.exists():
        return False
    with lock.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


async def _with_stack(settings: Settings, work: Callable[[Stack], Awaitable[int]]) -> int:
    """Run `work` against the running stack, or start what it needs in this process (no schedulers)."""
    remote = _stack_running(settings)
    names = [] if remote else [n for n in SERVICE_MODULES if n != "sync-gateway"]
    # One-shot: what the sinks have not finished once the work is stored stays queued; cut drains short.
    one_shot = Stack(settings, names, scheduling=False, health_port=0, announce=False, drain_timeout=0.5)
    try:
        async with one_shot as stack:
            return await work(stack)
    except StartError as exc:
        print(exc.line(), file=sys.stderr, flush=True)
        return EXIT_FAILED


def cmd_task(args: argparse.Namespace) -> int:
    settings = load(args)
    setup_logging(settings.log_dir, args.log_level)
    return asyncio.run(_with_stack(settings, lambda st: _run_tasks(st, [args.name], args.timeout)))


def cmd_run_once(args: argparse.Namespace) -> int:
    settings = load(args)
    setup_logging(settings.log_dir, args.log_level)
    return asyncio.run(
        _with_stack(settings, lambda st: _run_tasks(st, _once_tasks(settings), args.timeout, skip_off=True))
    )


def _once_tasks(settings: Settings) -> list[TaskName]:
    """What `run-once` runs: every task, but okx only with OKX keys (public-only OKX has no okx task)."""
    return [t for t in TASKS if t != "okx" or settings.okx_account_on()]


async def _run_tasks(stack: Stack, tasks: list[TaskName], timeout: float, *, skip_off: bool = False) -> int:
    assert stack.rt is not None
    worst = EXIT_OK
    for task in tasks:
        owner = TASK_OWNER[task]
        part = next((p for p in stack.parts if p.name == owner), None)
        if part is not None and part.state != "running":
            line = f"{TASK_LABEL[task]}: {part.state} — {owner} {part.reason}"
            if skip_off:
                print(f"{line} (skipped)")
                continue
            print(line, file=sys.stderr)
            worst = max(worst, EXIT_FAILED, key=SEVERITY.__getitem__)
            continue
        try:
            bar = ProgressBar(TASK_LABEL[task])
            result, stored = await request_task(stack.rt, task, timeout=timeout, on_progress=bar.update)
        except TaskTimeout as exc:
            print(f"{TASK_LABEL[task]}: failed — {exc}", file=sys.stderr)
            worst = max(worst, EXIT_FAILED, key=SEVERITY.__getitem__)
            continue
        print_summary(result, stored)
        worst = max(worst, STATUS_EXIT[result.status], key=SEVERITY.__getitem__)
    if stack.parts:
        await _settle(stack)
    return worst


async def _settle(stack: Stack, store_timeout: float = 30.0, grace: float = 2.0) -> None:
    """A one-shot run returns once SQLite holds everything; Feishu writes and alerts get `grace`
    seconds, then stay queued in JetStream for a running stack or the next run (never a minute's wait)."""
    assert stack.rt is not None

    async def pending(store: bool) -> dict[str, int]:
        wanted = [
            c
            for c in stack.rt.consumers  # type: ignore[union-attr]
            if not c.spec.stream.endswith("TASKS") and ("store-" in c.spec.durable) == store
        ]
        # Each look bounded: a busy server must not hold the terminal (an unknown lag counts as done).
        lags = await asyncio.gather(*(asyncio.wait_for(c.lag(), 2.0) for c in wanted), return_exceptions=True)
        return {c.spec.durable: n for c, n in zip(wanted, lags, strict=True) if isinstance(n, int) and n}

    async def until_idle(store: bool) -> None:
        while await pending(store):
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(until_idle(True), store_timeout)
    except TimeoutError:
        log.warning("the store has not committed every event yet; the next run finishes them")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(until_idle(False), grace)
    try:
        left = await asyncio.wait_for(pending(False), 3.0)
    except TimeoutError:
        left = {}
    if left:
        print(
            f"{sum(left.values())} Feishu writes/alerts still queued; a running `assetsync up` or the next run "
            "delivers them",
            flush=True,
        )


def print_summary(r: TaskResult, stored: bool) -> None:
    """A one-screen summary of a task run."""
    label = TASK_LABEL.get(r.task, r.task)
    when = datetime.fromtimestamp(r.started_at / 1000).strftime("%Y-%m-%d %H:%M:%S")
    counts = f"{r.records}/{r.total}" if r.total else str(r.records)
    print(f"{label}: {r.status} — {counts} in {r.duration:.1f}s (started {when}, source {r.source})")
    if r.message:
        print(f"  {r.message}")
    if r.data_as_of:
        print(f"  data as of {r.data_as_of}")
    for e in r.errors[:20]:
        qty = f" (quantity {e.quantity:g})" if e.quantity is not None else ""
        part = f" [{e.part}]" if e.part else ""
        print(f"  {e.kind}{part}: {e.asset}{qty} — {e.reason}")
    if len(r.errors) > 20:
        print(f"  … and {len(r.errors) - 20} more")
    if r.dust and "dust" not in r.message:
        print(f"  dust hidden: {', '.join(r.dust)}")
    if r.total > r.records and not r.errors and not r.message:
        print("  (no reason was reported for the missing ones)")
    print(f"  stored: {'yes' if stored else 'not confirmed (is the store running?)'}")


def cmd_setup_tables(args: argparse.Namespace) -> int:
    settings = load(args)
    setup_logging(None, args.log_level)
    return asyncio.run(_setup_tables(settings))


async def _setup_tables(settings: Settings) -> int:
    from assetsync_store import Database, StoreUnavailable

    db = Database(settings.db_path)
    try:
        await db.open()
    except StoreUnavailable as exc:
        print(f"SQLite: {exc}", file=sys.stderr)
        return EXIT_FAILED
    await db.close()
    print(f"SQLite: schema ready at {settings.db_path}")
    if not settings.feishu_on():
        print(
            "Feishu: off — set mcp_server.app_id/app_secret and asset_sync.feishu.app_token to create the tables"
        )
        return EXIT_OK
    from assetsync.feishu.setup import run_setup_tables

    return await run_setup_tables(settings)


def cmd_backup(args: argparse.Namespace) -> int:
    settings = load(args)
    setup_logging(None if args.backup_command == "list" else settings.log_dir, args.log_level)
    if args.backup_command == "list":
        return _backup_list(settings)
    if args.backup_command == "create":
        return asyncio.run(_with_stack(settings, lambda st: _run_tasks(st, ["backup"], 600.0)))
    return asyncio.run(_backup_restore(settings, args.path.resolve()))


def _backup_list(settings: Settings) -> int:
    from assetsync_store import list_backups

    backups = list_backups(settings.backup_dir)
    if not backups:
        print(f"no backups in {settings.backup_dir}")
        return EXIT_OK
    print(
        f"{len(backups)} backups in {settings.backup_dir} (keep_days={settings.config.asset_sync.database.backup.keep_days}):"
    )
    for b in backups:
        print(f"  {b.path.name}  {b.taken:%Y-%m-%d %H:%M:%S}  {b.size_bytes / 1e6:8.2f} MB")
    return EXIT_OK


async def _backup_restore(settings: Settings, path: Path) -> int:
    from assetsync_store import BackupError, verify_backup

    try:
        summary = await asyncio.to_thread(verify_backup, path)
    except BackupError as exc:
        print(f"restore refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"verified {path}: {summary}")

    async def restore(stack: Stack) -> int:
        assert stack.rt is not None
        result, _ = await request_task(stack.rt, "restore", args={"path": str(path)}, timeout=300)
        print_summary(result, True)
        return STATUS_EXIT[result.status]

    if _stack_running(settings):
        return await _with_stack(settings, restore)
    from assetsync_store import Database, StoreUnavailable

    db = Database(settings.db_path)
    try:
        await db.open()
        out = await db.restore_from(path)
    except (BackupError, StoreUnavailable) as exc:
        print(f"restore refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await db.close()
    print(f"restored {settings.db_path} from {path}: {out}")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from assetsync_store import run_replay

    settings = load(args)
    setup_logging(None, args.log_level)
    return asyncio.run(run_replay(settings, args.output, args.since, force=args.force))


def cmd_gen_token(args: argparse.Namespace) -> int:
    """A URL-safe token from the OS's CSPRNG, on stdout alone so `$(assetsync gen-token)` works."""
    import secrets

    if args.bytes < 16:
        print("assetsync: gen-token: --bytes must be at least 16", file=sys.stderr)
        return EXIT_CONFIG
    print(secrets.token_urlsafe(args.bytes))
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    """Ask the stack running on this data dir (or at nats.url) to re-read its config; print each answer."""
    try:
        settings = load(args)
    except ConfigError as exc:
        print(f"assetsync: config error: {exc}", file=sys.stderr)
        print("  not sent: the running stack keeps its current config", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(None, "WARNING")
    if not _stack_running(settings):
        print(
            f"assetsync: no stack is running on {settings.data_dir} (start one with `assetsync up`)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    url = settings.config.nats.url or str((read_state(settings.data_dir) or {}).get("nats_url", ""))
    return asyncio.run(_reload(url, Topology(settings.config.nats.prefix), args.timeout))


async def _reload(url: str, topo: Topology, timeout: float) -> int:
    from assetsync import bus
    from assetsync.reload import reload_subject, request_reload

    nc = await bus.connect(url, name="assetsync:reload", log=log)
    try:
        outcomes = await request_reload(nc, reload_subject(topo), wait=timeout)
    finally:
        await nc.drain()
    if not outcomes:
        print(f"assetsync: no answer from the stack at {url} within {timeout:g}s", file=sys.stderr)
        return EXIT_FAILED
    for o in outcomes:
        print(f"{o.instance or 'stack'}: {'reloaded' if o.ok else 'kept its config'} — {o.message}")
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILED


def cmd_holdings(args: argparse.Namespace) -> int:
    from assetsync.views import holdings_command

    return holdings_command(load(args), as_json=args.json, site=args.site)


def cmd_report(args: argparse.Namespace) -> int:
    from assetsync.views import report_command

    return report_command(load(args), args.date, as_json=args.json)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "gen-token": cmd_gen_token,
    "check-config": cmd_check_config,
    "up": cmd_up,
    "service": cmd_service,
    "task": cmd_task,
    "run-once": cmd_run_once,
    "setup-tables": cmd_setup_tables,
    "backup": cmd_backup,
    "replay": cmd_replay,
    "holdings": cmd_holdings,
    "reload": cmd_reload,
    "report": cmd_report,
}


def run(argv: Sequence[str] | None = None) -> Any:
    """Entry point for `python -m assetsync`."""
    raise SystemExit(main(argv))
