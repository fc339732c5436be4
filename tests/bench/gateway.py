"""`./run bench gateway`: the sync gateway against bare baselines, all measured in this one run.

1. Requests/s of the data endpoint vs a bare Starlette JSON endpoint (same ~1 KB bodies, both in
   their own process on uvicorn with the gateway's own settings, `server.server_config`; 8 keep-alive
   connections). Each connection walks its own page sequence (its own seed): uncached — every request
   a page no one asked for before, read from SQLite — and cached — pages already in the page cache —
   are measured and printed apart. Target ≥ 0.7× (uncached).
2. Full replication of 1,000,000 records site A → B (records/s, B's receiver in this process) vs
   one gzip JSONL download of the same records plus raw SQLite inserts. Target ≥ 0.5×.
3. Bytes on the wire with compression vs raw JSON. Target ≤ 1/3.
4. Incremental sync of 100 new records on the 1,000,000-record feed vs on a 10,000-record feed
   (median of several runs). Target within 1.2×.
5. An idle poll (request + 304 response) on the wire. Target ≤ 1 KB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvloop
from assetsync.config import SyncGatewayConf
from assetsync.embedded import free_port
from assetsync_sync_gateway.core import Gateway, GatewayOptions
from assetsync_sync_gateway.feeds import FeedStore, NewRecord
from assetsync_sync_gateway.live_settings import RuntimeConfig
from assetsync_sync_gateway.receiver import Receiver, Tuning
from assetsync_sync_gateway.receiver_store import ReceivedStore

BIG = 1_000_000
SMALL = 10_000
REGISTRY = [
    {"code": code, "category": "bench", "name": code, "api_path": f"/bench/{code}", "source": "http",
     "upstream_url": "http://127.0.0.1:9/unused", "interval_seconds": 86400}
    for code in ("BIG", "SMALL", "RPS")
]  # fmt: skip


def record(i: int) -> bytes:
    """A price-tick-like record (~150 bytes of JSON)."""
    asset = ("BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "TRX")[i % 8]
    price = 100.0 + (i % 9973) * 0.37
    return (
        b'{"type":"price.v1","source":"binance","asset":"%s","price":%.4f,"currency":"USDT",'
        b'"ts":%d,"asset_type":"crypto","via":"%s/USDT"}'
        % (asset.encode(), price, 1_763_000_000_000 + i * 1000, asset.encode())
    )


# --- processes -------------------------------------------------------------------------------


def bare_app_main(port: int) -> None:
    """A bare Starlette JSON endpoint (the baseline), also serving a pre-gzipped JSONL file."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    body = {"code": "RPS", "records": [{"seq": i, "origin": "A", "data": json.loads(record(i))} for i in range(5)],
            "next_cursor": "x" * 28, "has_more": True}  # fmt: skip
    jsonl = os.environ.get("BENCH_JSONL_GZ", "")

    async def data(request: Request) -> Response:
        return JSONResponse(body)

    async def dump(request: Request) -> Response:
        return FileResponse(jsonl, media_type="application/jsonl", headers={"Content-Encoding": "gzip"})

    app = Starlette(routes=[Route("/data", data), Route("/dump.jsonl", dump)])
    serve_like_the_gateway(app, port)


def serve_like_the_gateway(app: Any, port: int) -> None:
    """uvicorn with the gateway's own settings (uvloop, httptools, headers, keep-alive), in this process."""
    import uvicorn
    from assetsync_sync_gateway.http_server import server_config

    uvicorn.Server(server_config(app, "127.0.0.1", port)).run()


@contextlib.contextmanager
def process(
    args: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def gateway_process(
    data_dir: Path, registry: Path, port: int
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    cfg = {"sync_gateway": {"site_id": "A", "port": port, "registry": str(registry),
                            "sender": {"rate_limit": 0}}}  # fmt: skip
    return process(
        [
            "-m",
            "assetsync_sync_gateway",
            "--data-dir",
            str(data_dir),
            "--set",
            json.dumps(cfg),
            "--log-level",
            "WARNING",
        ],
        port,
    )


# --- a minimal keep-alive HTTP/1.1 load client (httpx itself would be the bottleneck) ----------


async def load(port: int, walks: Sequence[Sequence[bytes]], seconds: float, *, cycle: bool = True) -> float:
    """Requests/s over one keep-alive connection per walk, connection i sending walks[i] in order.

    With `cycle=False` a connection that reaches the end of its walk is an error (the uncached run
    must never repeat a page).
    """
    done = 0
    stop_at = time.monotonic() + seconds

    async def worker(walk: Sequence[bytes]) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        i = 0
        while time.monotonic() < stop_at:
            if i == len(walk):
                if not cycle:
                    raise RuntimeError(
                        f"a connection used all {len(walk)} pages of its walk: lower --seconds"
                    )
                i = 0
            await exchange(reader, writer, walk[i])
            i += 1
            done += 1
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker(w) for w in walks))
    return done / (time.monotonic() - started)


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
    """One request and its 200 response over a keep-alive connection."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {head[:60]!r}")


async def visit(port: int, requests: Sequence[bytes]) -> None:
    """Send each request once, in order, over one connection (to fill the page cache)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for r in requests:
        await exchange(reader, writer, r)
    writer.close()


def walks(pages: Sequence[bytes], conns: int, seed: int, *, disjoint: bool) -> list[list[bytes]]:
    """One page sequence per connection, each shuffled with its own seed.

    `disjoint`: the connections split the pages between them, so no page is asked for twice.
    """
    out = []
    for i in range(conns):
        mine = list(pages[i::conns] if disjoint else pages)
        random.Random(seed + i).shuffle(mine)
        out.append(mine)
    return out


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n{extra}\r\n".encode()


# --- the measurements --------------------------------------------------------------------------


async def populate(data_dir: Path) -> dict[str, str]:
    """Fill the source site's feeds (BIG, SMALL, RPS); returns each feed's epoch."""
    fs = FeedStore(data_dir / "gateway" / "feeds.db", "A")
    await fs.open(["BIG", "SMALL", "RPS"])
    chunk = 20000
    for code, n in (("BIG", BIG), ("SMALL", SMALL), ("RPS", 100_000)):
        for start in range(0, n, chunk):
            await fs.append({code: [NewRecord("", record(i)) for i in range(start, min(n, start + chunk))]})
    epochs = {c: fs.state(c).epoch for c in ("BIG", "SMALL", "RPS")}
    await fs.close()
    return epochs


def make_receiver(data_dir: Path, remote: str, page_limit: int) -> Receiver:
    conf = SyncGatewayConf()
    rc = RuntimeConfig(conf, data_dir / "gateway" / "runtime_config.json")
    rc.update_receiver(json.dumps({"enabled": True, "remote_url": remote}).encode())
    store = ReceivedStore(data_dir / "gateway" / "received.db", data_dir / "synced_data")
    return Receiver(store, rc, "B", tuning=Tuning(page_limit=page_limit))


async def baseline_download(port: int, db: Path) -> tuple[float, int]:
    """One gzip JSONL download, decompressed and inserted with executemany (1000 rows per commit)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t(seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    started = time.perf_counter()
    n = 0
    d = zlib.decompressobj(31)
    rest = b""
    batch: list[tuple[int, bytes]] = []
    async with (
        httpx.AsyncClient(timeout=120) as c,
        c.stream("GET", f"http://127.0.0.1:{port}/dump.jsonl") as r,
    ):
        async for chunk in r.aiter_raw(1 << 20):
            lines = (rest + d.decompress(chunk)).split(b"\n")
            rest = lines.pop()
            for line in lines:
                n += 1
                batch.append((n, line))
                if len(batch) >= 1000:
                    conn.execute("BEGIN")
                    conn.executemany("INSERT INTO t(seq, data) VALUES (?, ?)", batch)
                    conn.execute("COMMIT")
                    batch.clear()
    if batch:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t(seq, data) VALUES (?, ?)", batch)
        conn.execute("COMMIT")
    took = time.perf_counter() - started
    conn.close()
    return took, n


async def incremental(port: int, work: Path, code: str, base_records: int, runs: int) -> float:
    """Median time to sync 100 new records on a feed already replicated (source appends via the API-less store)."""
    times = []
    rx = make_receiver(work, f"http://127.0.0.1:{port}", 10000)
    await rx.store.open()
    await rx.start()
    try:
        task, _ = rx.start_sync(code)
        first = await task
        assert first.status == "success", first
        for _ in range(runs):
            await append_remote(port, code)
            t = time.perf_counter()
            task, _ = rx.start_sync(code)
            out = await task
            times.append(time.perf_counter() - t)
            assert out.records == 100, out
    finally:
        await rx.stop()
        await rx.store.close()
    return statistics.median(times)


async def append_remote(port: int, code: str) -> None:
    """Ask the source process to append 100 records (its bench-only control hook)."""
    async with httpx.AsyncClient() as c:
        r = await c.post(f"http://127.0.0.1:{port}/bench/append/{code}")
        r.raise_for_status()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="./run bench gateway", description=__doc__)
    p.add_argument("--serve-bare", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--serve-source", default="", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=5.0, help="length of each requests/s run")
    p.add_argument("--records", type=int, default=BIG)
    args = p.parse_args(argv)
    if args.serve_bare:
        bare_app_main(args.serve_bare)
        return 0
    if args.serve_source:
        serve_source(args.serve_source)
        return 0
    return uvloop.run(run(args))


def serve_source(spec: str) -> None:
    """Site A as its own process: the real gateway app plus a bench-only hook to append records."""
    import msgspec
    from assetsync_sync_gateway.http_api import create_app
    from assetsync_sync_gateway.registry import Endpoint
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    data_dir, port = spec.rsplit(":", 1)
    eps = [msgspec.convert(e, Endpoint) for e in REGISTRY]
    gw = Gateway(GatewayOptions(data_dir=Path(data_dir), site_id="A", conf=msgspec.convert(
        {"sender": {"rate_limit": 0}}, SyncGatewayConf), extra_endpoints=eps, run_sources=False))  # fmt: skip
    app = create_app(gw)
    counter = {"n": 10_000_000}

    async def append(request: Request) -> Response:
        code = request.path_params["code"]
        start = counter["n"]
        counter["n"] += 100
        await gw.feeds.append({code: [NewRecord("", record(i)) for i in range(start, start + 100)]})
        return Response(b"ok")

    app.router.routes.insert(0, Route("/bench/append/{code}", append, methods=["POST"]))
    serve_like_the_gateway(app, int(port))


async def run(args: argparse.Namespace) -> int:
    global BIG
    BIG = args.records
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    src = work / "a"
    print(f"populating the source feeds ({BIG:,} + {SMALL:,} records)…", flush=True)
    t = time.perf_counter()
    epochs = await populate(src)
    print(f"  populated in {time.perf_counter() - t:.1f}s", flush=True)
    # The baseline's file: the same records as JSONL, pre-gzipped (the best a plain download can do).
    jsonl_gz = work / "dump.jsonl.gz"
    raw_json_bytes = 0
    with gzip.open(jsonl_gz, "wb", compresslevel=6) as f:
        for i in range(BIG):
            line = record(i) + b"\n"
            raw_json_bytes += len(line)
            f.write(line)
    a_port, bare_port = free_port(), free_port()
    results: dict[str, float] = {}
    here = ["-m", "tests.bench.gateway"]
    with (
        process([*here, "--serve-source", f"{src}:{a_port}"], a_port),
        process([*here, "--serve-bare", str(bare_port)], bare_port, env={"BENCH_JSONL_GZ": str(jsonl_gz)}),
    ):
        # 1. requests/s
        from assetsync_sync_gateway.envelope import encode_cursor

        conns = 8
        bare = [[get("/data")]] * conns

        def page(k: int) -> bytes:
            return get(f"/api/data-sync/sender/data/RPS?since={encode_cursor(epochs['RPS'], k)}&limit=5")

        # Uncached: 99,995 distinct pages (one per start position), split between the connections.
        # Cached: 512 pages visited once beforehand; every connection walks all of them in its own order.
        positions = list(range(99_995))
        random.Random(7).shuffle(positions)
        warm_pages, fresh_pages = [page(k) for k in positions[:512]], [page(k) for k in positions[512:]]
        await visit(a_port, warm_pages)
        await load(bare_port, bare, 1.0)
        rps_bare = await load(bare_port, bare, args.seconds)
        rps_cold = await load(
            a_port, walks(fresh_pages, conns, 100, disjoint=True), args.seconds, cycle=False
        )
        rps_hot = await load(a_port, walks(warm_pages, conns, 200, disjoint=False), args.seconds)
        results["rps_ratio"] = rps_cold / rps_bare
        print(f"\n1. requests/s over {conns} connections, each walking its own pages:\n"
              f"   bare Starlette (same uvicorn settings)     {rps_bare:>9,.0f}\n"
              f"   data endpoint, uncached (SQLite, new pages) {rps_cold:>8,.0f} → {rps_cold / rps_bare:.2f}× (target ≥ 0.7×)\n"
              f"   data endpoint, cached (page cache hits)     {rps_hot:>8,.0f} → {rps_hot / rps_bare:.2f}×", flush=True)  # fmt: skip

        # 2. full replication vs gzip JSONL download + raw inserts
        base_t, n = await baseline_download(bare_port, work / "baseline.db")
        assert n == BIG, n
        rx_dir = work / "b"
        rx = make_receiver(rx_dir, f"http://127.0.0.1:{a_port}", 10000)
        await rx.store.open()
        await rx.start()
        t = time.perf_counter()
        task, _ = rx.start_sync("BIG")
        out = await task
        rep_t = time.perf_counter() - t
        es = rx.stats.endpoint("BIG")
        await rx.stop()
        await rx.store.close()
        assert out.status == "success" and out.records == BIG, out
        results["replication_ratio"] = base_t / rep_t
        print(f"\n2. full replication of {BIG:,} records: gateway {rep_t:.2f}s ({BIG / rep_t:,.0f} records/s); "
              f"baseline gzip JSONL + raw inserts {base_t:.2f}s ({BIG / base_t:,.0f} records/s) → "
              f"{base_t / rep_t:.2f}× (target ≥ 0.5×)", flush=True)  # fmt: skip
        # 3. bytes on the wire
        results["wire_ratio"] = es.bytes / es.bytes_raw
        print(f"\n3. bytes on the wire: {es.bytes:,} compressed vs {es.bytes_raw:,} raw JSON pages "
              f"({raw_json_bytes:,} as bare JSONL) → {es.bytes / es.bytes_raw:.3f} (target ≤ 0.333)", flush=True)  # fmt: skip
        mirror_lines = (rx_dir / "synced_data" / "BIG.jsonl").read_bytes().count(b"\n")
        assert mirror_lines == BIG, mirror_lines

        # 4. incremental 100 on the big feed vs the small feed
        inc_big = await incremental(a_port, rx_dir, "BIG", BIG, 11)
        inc_small = await incremental(a_port, work / "c", "SMALL", SMALL, 11)
        results["incremental_ratio"] = inc_big / inc_small
        print(f"\n4. incremental sync of 100 new records: on {BIG:,} {inc_big * 1000:.1f} ms, on {SMALL:,} "
              f"{inc_small * 1000:.1f} ms → {inc_big / inc_small:.2f}× (target ≤ 1.2×)", flush=True)  # fmt: skip

        # 5. idle poll on the wire
        idle = await idle_poll_bytes(a_port, rx_dir)
        results["idle_bytes"] = idle
        print(f"\n5. idle poll: {idle} bytes on the wire, request + 304 response (target ≤ 1024)", flush=True)
    ok = (
        results["rps_ratio"] >= 0.7
        and results["replication_ratio"] >= 0.5
        and results["wire_ratio"] <= 1 / 3
        and results["incremental_ratio"] <= 1.2
        and results["idle_bytes"] <= 1024
    )
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED", flush=True)
    return 0 if ok else 1


async def idle_poll_bytes(port: int, rx_dir: Path) -> int:
    """Bytes of the receiver's own idle request for BIG (cursor + ETag from its store) and the answer."""
    store = ReceivedStore(rx_dir / "gateway" / "received.db", rx_dir / "synced_data")
    await store.open()
    cur = await store.cursor("BIG")
    await store.close()
    assert cur is not None and cur.etag, cur
    req = (
        f"GET /api/data-sync/sender/data/BIG?limit={Tuning().page_limit}&exclude_origin=B&since={cur.cursor} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAccept: application/json\r\nAccept-Encoding: zstd, gzip\r\n"
        f"Connection: keep-alive\r\nUser-Agent: python-httpx/0.28.1\r\nIf-None-Match: {cur.etag}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 304"), head
    return len(req) + len(head)


if __name__ == "__main__":
    raise SystemExit(main())
