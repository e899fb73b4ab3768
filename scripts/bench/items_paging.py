"""Benchmark: a page of items costs the same in a conversation of 100,000 items as in one of 100.

Purpose
    Listing a conversation's items pages by keyset on ``(conversation_id, seq)``: a page is an index
    range scan that reads ``limit + 1`` rows wherever it starts, so its cost must not grow with the
    size of the conversation. This script measures that through the real HTTP API.

What it does
    1. Creates a fresh database ``llm_api_bench_<random>`` next to ``--dsn`` (dropped at the end).
    2. Starts the service in this process on a free loopback port (``create_app`` behind an aiohttp
       ``AppRunner``), as production runs it: strict contract validation off, rate limit off.
    3. Logs in as a guest and fills two conversations through ``POST /v1/conversations/{id}/items``,
       20 items per request with ``--concurrency`` requests in flight: S with ``--small`` items and
       L with ``--items`` items. No SQL seeding: the rows are exactly what the API writes. With
       ``--newer N``, a third conversation then gets N items, so that L is no longer the conversation
       with the newest rows of the table (the usual case in a service with many users).
    4. Refreshes the table's planner statistics (``ANALYZE``, as autovacuum does after such a load),
       so that the plans measured do not depend on whether autovacuum ran yet.
    5. Times ``GET /v1/conversations/{id}/items?limit=20`` for the first page (newest first, the
       default order) and for a deep page (``after=<an item from the middle>``), ``--requests``
       samples per case after a warm-up, alternating S and L request by request (and which of the two
       goes first) over one keep-alive session, so that machine noise hits both sides alike.
    6. Prints a markdown table (median and p90 in milliseconds, and the ratio L/S of the medians),
       writes the same to ``--json``, and prints PostgreSQL's ``EXPLAIN ANALYZE`` of the page query
       for L, read from ``llm_api.db.conversations._ITEM_PAGES['desc']``.

Usage
    .venv/bin/python scripts/bench/items_paging.py [--dsn DSN] [--items 100000] [--small 100]
        [--requests 300] [--concurrency 16] [--newer 100000] [--json scripts/bench/results/items_paging.json]

Reading the ratio
    ``ratio`` is median(L) / median(S). Around 1.0 (say 0.8 to 1.25 on a noisy machine) means the page
    cost does not depend on the conversation's size: the claim holds. A ratio that grows with
    ``--items`` (2, 10, 100 ...) means the page reads rows in proportion to the conversation, e.g. a
    sequential scan, a sort of every item, or an index scan that filters out the rows of other
    conversations (``Rows Removed by Filter`` in the EXPLAIN output, which shows where). Both sides
    include the same HTTP, authentication and JSON work, so the ratio isolates the part that depends
    on size; the absolute times include the client, which runs in the same process as the service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import aiohttp
import psycopg2
from aiohttp import web

from llm_api.app import create_app
from llm_api.config import Settings
from llm_api.db.conversations import _ITEM_PAGES

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "items_paging.json"
BENCH_SECRET_KEY = "bench-secret-key-items-paging-0123456789abcdef"
BATCH = 20  # the most items one POST may carry
PAGE = 20
WARMUP = 30


# --- the database and the service -----------------------------------------------------------------------


class Service:
    """The app on a free loopback port, in this process."""

    def __init__(self, dsn: str, data_dir: str) -> None:
        self.settings = Settings.model_validate(
            {
                "DB_POSTGRESQL_WRITE_DSN": dsn,
                "LLM_API_SECRET_KEY": BENCH_SECRET_KEY,
                "OPENAPI_STRICT_VALIDATION": False,
                "RATE_LIMIT_PER_MINUTE": 0,
                "LLM_API_DATA_DIR": data_dir,
            }
        )
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._runner = web.AppRunner(create_app(self.settings), access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# --- setup through the API ----------------------------------------------------------------------------


def batch_of_items(start: int) -> list[dict]:
    """Twenty plausible chat items: alternating questions and answers of a few sentences."""
    items = []
    for n in range(start, start + BATCH):
        if n % 2 == 0:
            items.append(
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {
                            "type": "input_text",
                            "text": f"Question {n}: how would you plan day {n % 7 + 1} of a trip to Lyon, "
                            "with a museum in the morning and a long lunch?",
                        }
                    ],
                }
            )
        else:
            items.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [
                        {
                            "type": "output_text",
                            "annotations": [],
                            "text": f"Answer {n}: start at the Musee des Confluences when it opens, walk along the Saone, "
                            "then book a bouchon in the Presqu'ile around one; keep the afternoon light.",
                        }
                    ],
                }
            )
    return items


async def fill(
    session: aiohttp.ClientSession, url: str, conversation_id: str, count: int, concurrency: int, label: str
) -> tuple[list[str], float]:
    """Add ``count`` items, BATCH per request, ``concurrency`` requests in flight.

    Returns the item ids in the order the service answered them (about their order in the
    conversation), and the seconds it took.
    """
    batches = list(range(0, count, BATCH))
    done: dict[int, list[str]] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for start in batches:
        queue.put_nowait(start)
    started = time.perf_counter()
    last_report = started

    async def worker() -> None:
        nonlocal last_report
        while not queue.empty():
            start = queue.get_nowait()
            items = batch_of_items(start)[: count - start]
            async with session.post(f"{url}/v1/conversations/{conversation_id}/items", json={"items": items}) as response:
                body = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"adding items answered {response.status}: {body}")
            done[len(done)] = [item["id"] for item in body["data"]]
            now = time.perf_counter()
            if now - last_report >= 5:
                last_report = now
                added = sum(len(ids) for ids in done.values())
                print(f"  {label}: {added:,}/{count:,} items, {added / (now - started):,.0f} items/s", flush=True)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return [item_id for n in sorted(done) for item_id in done[n]], seconds


async def guest_session(url: str) -> aiohttp.ClientSession:
    """One keep-alive session carrying a new guest's access token."""
    connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=300)
    async with aiohttp.ClientSession() as anonymous, anonymous.post(f"{url}/auth/guest-login") as response:
        if response.status != 201:
            raise RuntimeError(f"guest login answered {response.status}: {await response.text()}")
        token = (await response.json())["access_token"]
    return aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {token}"})


async def new_conversation(session: aiohttp.ClientSession, url: str, title: str) -> str:
    async with session.post(f"{url}/v1/conversations", json={"title": title}) as response:
        if response.status != 200:
            raise RuntimeError(f"creating a conversation answered {response.status}: {await response.text()}")
        return (await response.json())["id"]


# --- measuring -------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str  # "first page" or "deep page"
    query: str  # what the requests ask, for the report
    small_url: str  # the request on S
    large_url: str  # the same request on L


async def timed_get(session: aiohttp.ClientSession, url: str) -> float:
    """Milliseconds for one GET, body read in full; the page must hold PAGE items."""
    started = time.perf_counter()
    async with session.get(url) as response:
        body = await response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {url} answered {response.status}: {body[:300]!r}")
    return elapsed


async def check_page(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url) as response:
        page = await response.json()
    if response.status != 200 or len(page["data"]) != PAGE or not page["has_more"]:
        raise RuntimeError(
            f"GET {url}: expected a full page with more after it, got {response.status} {len(page.get('data', []))} items"
        )


async def measure(session: aiohttp.ClientSession, case: Case, requests: int) -> dict[str, list[float]]:
    """``requests`` samples of S and of L after a warm-up, interleaved: S L, L S, S L ..."""
    for url in (case.small_url, case.large_url):
        await check_page(session, url)
    for _ in range(WARMUP):
        await timed_get(session, case.small_url)
        await timed_get(session, case.large_url)
    samples: dict[str, list[float]] = {"S": [], "L": []}
    for n in range(requests):
        sides = (("S", case.small_url), ("L", case.large_url))
        for side, url in sides if n % 2 == 0 else reversed(sides):
            samples[side].append(await timed_get(session, url))
    return samples


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def summary(case: Case, samples: dict[str, list[float]]) -> dict:
    small, large = statistics.median(samples["S"]), statistics.median(samples["L"])
    return {
        "case": case.name,
        "query": case.query,
        "samples": len(samples["S"]),
        "small_median_ms": round(small, 3),
        "small_p90_ms": round(p90(samples["S"]), 3),
        "large_median_ms": round(large, 3),
        "large_p90_ms": round(p90(samples["L"]), 3),
        "ratio_large_over_small": round(large / small, 3),
    }


def markdown(results: list[dict], small: int, large: int) -> str:
    lines = [
        "| case | conversation | items | median ms | p90 ms | ratio L/S (medians) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in results:
        lines.append(f"| {row['case']} | S | {small:,} | {row['small_median_ms']:.2f} | {row['small_p90_ms']:.2f} | |")
        lines.append(
            f"| {row['case']} | L | {large:,} | {row['large_median_ms']:.2f} | {row['large_p90_ms']:.2f} "
            f"| **{row['ratio_large_over_small']:.2f}** |"
        )
    return "\n".join(lines)


def analyze(dsn: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE llm_api.conversation_items")
    finally:
        conn.close()


def explain(dsn: str, conversation_id: str, after: str | None) -> list[str]:
    """EXPLAIN ANALYZE of the service's own page query (newest first), for one conversation."""
    query = _ITEM_PAGES["desc"]
    params = query.parameters({"conversation_id": conversation_id, "after": after, "limit": PAGE + 1})
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + query.sql, params)
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


# --- the run -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, dsn: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="llm-api-bench-") as data_dir:
        async with Service(dsn, data_dir) as service:
            base = service.url
            session = await guest_session(base)
            try:
                small_id = await new_conversation(session, base, "S")
                large_id = await new_conversation(session, base, "L")
                print(
                    f"service on {base}; filling S ({args.small:,} items) and L ({args.items:,} items), "
                    f"{BATCH} per request, {args.concurrency} requests in flight",
                    flush=True,
                )
                started = time.perf_counter()
                (small_ids, small_s), (large_ids, large_s) = await asyncio.gather(
                    fill(session, base, small_id, args.small, max(1, args.concurrency // 4), "S"),
                    fill(session, base, large_id, args.items, args.concurrency, "L"),
                )
                if args.newer:
                    newer_id = await new_conversation(session, base, "newer")
                    await fill(session, base, newer_id, args.newer, args.concurrency, "newer")
                setup_seconds = time.perf_counter() - started
                rate = args.items / large_s
                print(
                    f"setup: {args.small + args.items + args.newer:,} items in {setup_seconds:.1f} s "
                    f"(L: {args.items:,} items in {large_s:.1f} s, {rate:,.0f} items/s)",
                    flush=True,
                )

                # Statistics as autovacuum leaves them once it has seen the new rows: without this the
                # plan (hence the timing) would depend on whether autovacuum happened to run yet.
                analyze(dsn)
                small_items = f"{base}/v1/conversations/{small_id}/items?limit={PAGE}"
                large_items = f"{base}/v1/conversations/{large_id}/items?limit={PAGE}"
                # The deep page starts in the middle of each conversation (ids in about their order).
                small_mid, large_mid = small_ids[len(small_ids) // 2], large_ids[len(large_ids) // 2]
                cases = [
                    Case("first page", f"limit={PAGE}", small_items, large_items),
                    Case(
                        "deep page",
                        f"limit={PAGE}&after=<middle item>",
                        f"{small_items}&after={small_mid}",
                        f"{large_items}&after={large_mid}",
                    ),
                ]
                results = []
                for case in cases:
                    print(
                        f"measuring the {case.name}: {args.requests} samples per conversation after {WARMUP} "
                        "warm-up requests, S and L interleaved",
                        flush=True,
                    )
                    results.append(summary(case, await measure(session, case, args.requests)))
            finally:
                await session.close()
    return {
        "results": results,
        "setup_seconds": round(setup_seconds, 1),
        "large_fill_seconds": round(large_s, 1),
        "large_fill_items_per_second": round(rate),
        "small_fill_seconds": round(small_s, 1),
        "large_conversation_id": large_id,
        "large_middle_item_id": large_mid,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="an admin DSN; the bench database is created next to it")
    parser.add_argument("--items", type=int, default=100_000, help="items in the large conversation L")
    parser.add_argument("--small", type=int, default=100, help="items in the small conversation S")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per conversation and case")
    parser.add_argument("--concurrency", type=int, default=16, help="item-adding requests in flight during setup")
    parser.add_argument(
        "--newer",
        type=int,
        default=100_000,
        help="items then added to a third conversation, after L, so that L does not hold the newest rows "
        "(the harder case for the index; 0: none",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results as JSON")
    args = parser.parse_args(argv)
    if args.small < 2 * PAGE + 2 or args.items < 2 * PAGE + 2:
        parser.error(f"--small and --items must be at least {2 * PAGE + 2}: the deep page needs a full page after the middle")
    if args.newer < 0:
        parser.error("--newer must not be negative")
    if args.requests < 10:
        parser.error("--requests must be at least 10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    wall = time.perf_counter()
    with h.fresh_database(args.dsn) as dsn:
        report = asyncio.run(run(args, dsn))
        plans = {
            "first page": explain(dsn, report["large_conversation_id"], None),
            "deep page": explain(dsn, report["large_conversation_id"], report["large_middle_item_id"]),
        }
    table = markdown(report["results"], args.small, args.items)
    print()
    print(table)
    for case, plan in plans.items():
        print(f"\nEXPLAIN ANALYZE of the page query for L ({case}, llm_api.db.conversations._ITEM_PAGES['desc']):")
        print("\n".join("    " + line for line in plan))
    wall_seconds = time.perf_counter() - wall
    print(f"\nwall time: {wall_seconds:.1f} s")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "benchmark": "items_paging",
                "page_size": PAGE,
                "small_items": args.small,
                "large_items": args.items,
                "newer_items": args.newer,
                "requests": args.requests,
                "warmup": WARMUP,
                "concurrency": args.concurrency,
                **{key: value for key, value in report.items() if key not in ("large_conversation_id", "large_middle_item_id")},
                "markdown": table,
                "explain": plans,
                "wall_seconds": round(wall_seconds, 1),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
