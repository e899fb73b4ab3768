"""Soak test: minutes of mixed traffic against `llm-api serve --workers N`; each worker's memory must stay flat.

    .venv/bin/python scripts/soak.py [--minutes 10] [--clients 8] [--workers 2] [--max-growth 0.20]

Not part of CI (it takes the whole --minutes). It creates a fresh database on the PostgreSQL at
127.0.0.1:5432 (`--admin-dsn`; dropped at the end), starts the benchmark fake vLLM
(scripts/bench/fake_upstream.py) and `llm-api serve --workers N` on it, as the benchmarks do
(scripts/bench/harness.py; their logs in scripts/bench/results/logs/), then lets
`--clients` concurrent clients send mixed traffic: guest logins and token refreshes, chats plain and
streamed, with and without a conversation, conversations (create, list, get, items, delete), settings
(get, patch), API keys (create, use, delete), the model list, and requests that must fail (400, 401, 404).

Identity churn is paced, not flat out: --logins-per-minute new guests and --refreshes-per-minute token
refreshes (60 each by default, all clients together). Each worker remembers the users it saw and their
settings, up to 10,000 of each (llm_api/auth/users.py, user_settings.py), and the access tokens it verified
for as long as they are used (at most 60 s unused; llm_api/auth/tokens.py), so a worker grows a little as
new users arrive: bounded, not a leak. Raise the rates and --minutes to watch those fill and level off.

Each worker's resident memory (VmRSS of /proc/<pid>/status) is sampled once the traffic has run for
--warmup seconds (the start), every minute, and at the end. The report: the samples per worker, each
worker's growth from start to end, the requests by operation and status, and every answer that was not
the expected one. Exit status 1 when any answer was a 5xx or otherwise unexpected, a request failed at
the transport level, a worker was replaced, or a worker grew by more than --max-growth (a fraction).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))

import harness as h

MODEL = h.GATEWAY_MODEL  # the fake's model, as llm-api names it


# --- traffic ---------------------------------------------------------------------------------------------------


@dataclass
class Stats:
    by_operation: Counter = field(default_factory=Counter)  # (operation, status) -> count
    by_status: Counter = field(default_factory=Counter)
    unexpected: Counter = field(default_factory=Counter)  # (operation, status) -> count
    examples: list[str] = field(default_factory=list)  # the first few unexpected answers, with their bodies
    transport_errors: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


class Unexpected(Exception):
    pass


class Client:
    """One caller: a guest (renewed now and then), its conversations and keys, one request at a time."""

    def __init__(self, base: str, stats: Stats, rng: random.Random) -> None:
        self.base = base
        self.stats = stats
        self.rng = rng
        self.session: aiohttp.ClientSession | None = None
        self.token = ""
        self.refresh_token = ""
        self.conversations: list[str] = []
        self.next_login = 0.0  # time.monotonic() when this client becomes a new guest
        self.next_refresh = 0.0  # ... and when it refreshes its tokens

    async def request(
        self,
        operation: str,
        method: str,
        path: str,
        expected: tuple[int, ...],
        *,
        body: object = None,
        raw: bytes | None = None,
        headers: dict | None = None,
        auth: bool = True,
        stream: bool = False,
    ) -> tuple[int, object]:
        assert self.session is not None
        sent = dict(headers or {})
        if auth and "X-API-Key" not in sent:
            sent["Authorization"] = f"Bearer {self.token}"
        kwargs: dict = {"headers": sent}
        if body is not None:
            kwargs["json"] = body
        elif raw is not None:
            kwargs["data"] = raw
            sent["Content-Type"] = "application/json"
        try:
            async with self.session.request(method, self.base + path, **kwargs) as answer:
                status = answer.status
                if stream and status == 200:
                    last = None
                    async for line in answer.content:
                        if line.startswith(b"data: "):
                            last = line[6:].strip()
                    payload: object = last
                    if last != b"[DONE]":
                        status = -1  # a stream that did not end with [DONE]
                else:
                    text = await answer.text()
                    try:
                        payload = json.loads(text) if text else None
                    except ValueError:
                        payload = text
        except (TimeoutError, aiohttp.ClientError) as error:
            self.stats.transport_errors[f"{operation}: {type(error).__name__}"] += 1
            raise Unexpected from None
        self.stats.by_operation[(operation, status)] += 1
        self.stats.by_status[status] += 1
        if status not in expected:
            self.stats.unexpected[(operation, status)] += 1
            if len(self.stats.examples) < 10:
                self.stats.examples.append(f"{operation}: {method} {path} -> {status}: {str(payload)[:300]}")
            raise Unexpected
        return status, payload

    # ---- identity
    async def login(self) -> None:
        _, tokens = await self.request("guest login", "POST", "/auth/guest-login", (201,), auth=False)
        self.token, self.refresh_token = tokens["access_token"], tokens["refresh_token"]
        self.conversations = []

    async def refresh(self) -> None:
        _, tokens = await self.request(
            "refresh token", "POST", "/auth/refresh-token", (200,), body={"refresh_token": self.refresh_token}, auth=False
        )
        self.token, self.refresh_token = tokens["access_token"], tokens["refresh_token"]

    async def me(self) -> None:
        await self.request("me", "GET", "/auth/me", (200,))

    # ---- chats
    def _chat(self, stream: bool, conversation: str | None) -> dict:
        words = " ".join(self.rng.choice(["hello", "bonjour", "soak", "memory", "flat", "worker"]) for _ in range(8))
        body: dict = {
            "model": MODEL,
            "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": words}],
            "max_tokens": 32,
            "temperature": 0.2,
        }
        if stream:
            body["stream"] = True
            if self.rng.random() < 0.5:
                body["stream_options"] = {"include_usage": True}
        if conversation is not None:
            body["conversation"] = conversation
        return body

    async def chat(self, stream: bool, with_conversation: bool) -> None:
        conversation = None
        if with_conversation:
            if not self.conversations:
                await self.create_conversation()
            conversation = self.rng.choice(self.conversations)
        name = f"chat {'streamed' if stream else 'plain'}{' in a conversation' if with_conversation else ''}"
        await self.request(name, "POST", "/v1/chat/completions", (200,), body=self._chat(stream, conversation), stream=stream)

    # ---- conversations
    async def create_conversation(self) -> None:
        _, conversation = await self.request(
            "conversation create",
            "POST",
            "/v1/conversations",
            (200,),
            body={"title": f"soak {self.rng.randrange(10**6)}", "metadata": {"soak": "yes"}},
        )
        self.conversations.append(conversation["id"])
        if len(self.conversations) > 5:  # keep a few: delete the oldest
            await self.request("conversation delete", "DELETE", f"/v1/conversations/{self.conversations.pop(0)}", (200,))

    async def browse_conversations(self) -> None:
        await self.request("conversation list", "GET", "/v1/conversations?limit=20", (200,))
        if self.conversations:
            conversation = self.rng.choice(self.conversations)
            await self.request("conversation get", "GET", f"/v1/conversations/{conversation}", (200,))
            await self.request("conversation items", "GET", f"/v1/conversations/{conversation}/items?limit=20", (200,))

    # ---- settings, keys, models
    async def settings(self) -> None:
        await self.request("settings get", "GET", "/v1/users/me/settings", (200,))
        await self.request(
            "settings patch",
            "PATCH",
            "/v1/users/me/settings",
            (200,),
            body={
                "profile_settings": {"nick_name": f"soak{self.rng.randrange(1000)}"},
                "memory_config": {"max_user_items": self.rng.randrange(21)},
                "preferences": {"theme": self.rng.choice(["dark", "light"])},
            },
        )

    async def api_key(self) -> None:
        _, key = await self.request(
            "api key create", "POST", "/auth/api-keys", (201,), body={"name": "soak", "expires_in_days": 1}
        )
        await self.request("api key use", "GET", "/v1/models", (200,), headers={"X-API-Key": key["key"]}, auth=False)
        await self.request("api key delete", "DELETE", f"/auth/api-keys/{key['id']}", (204,))

    async def models(self) -> None:
        await self.request("model list", "GET", "/v1/models", (200,))

    # ---- answers that must be errors
    async def client_errors(self) -> None:
        kind = self.rng.randrange(5)
        if kind == 0:
            await self.request("4xx: chat without messages", "POST", "/v1/chat/completions", (400,), body={"model": MODEL})
        elif kind == 1:
            await self.request(
                "4xx: unknown model",
                "POST",
                "/v1/chat/completions",
                (404,),
                body={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
            )
        elif kind == 2:
            await self.request("4xx: unknown conversation", "GET", "/v1/conversations/conv_doesnotexist0", (404,))
        elif kind == 3:
            await self.request("4xx: no credentials", "GET", "/v1/conversations", (401,), auth=False)
        else:
            await self.request("4xx: malformed JSON", "POST", "/v1/conversations", (400,), raw=b'{"title": ')

    async def run(self, until: float, login_interval: float, refresh_interval: float) -> None:
        """Mixed requests until ``until``; a new guest about every ``login_interval`` seconds and a token
        refresh about every ``refresh_interval`` (each client; jittered, so that clients do not align)."""
        actions = [  # (weight, action)
            (14, lambda: self.chat(stream=False, with_conversation=False)),
            (14, lambda: self.chat(stream=True, with_conversation=False)),
            (8, lambda: self.chat(stream=False, with_conversation=True)),
            (8, lambda: self.chat(stream=True, with_conversation=True)),
            (5, self.create_conversation),
            (12, self.browse_conversations),
            (6, self.settings),
            (4, self.api_key),
            (8, self.models),
            (3, self.me),
            (8, self.client_errors),
        ]
        weights = [weight for weight, _ in actions]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as self.session:
            while time.monotonic() < until:
                try:
                    now = time.monotonic()
                    if not self.token:
                        self.next_login = now + login_interval * self.rng.uniform(0.5, 1.5)
                        self.next_refresh = now + refresh_interval * self.rng.uniform(0.5, 1.5)
                        await self.login()
                    elif now >= self.next_login:
                        self.next_login = now + login_interval * self.rng.uniform(0.5, 1.5)
                        await self.login()
                    elif now >= self.next_refresh:
                        self.next_refresh = now + refresh_interval * self.rng.uniform(0.5, 1.5)
                        await self.refresh()
                    else:
                        await self.rng.choices(actions, weights)[0][1]()
                except Unexpected:
                    await asyncio.sleep(0.05)  # carry on: the report counts it


# --- the run ---------------------------------------------------------------------------------------------------


async def drive(base: str, args: argparse.Namespace, server: h.Server, workers: list[int]) -> tuple[Stats, list, list[str]]:
    stats = Stats()
    samples: list[tuple[str, float, dict[int, float | None], int]] = []  # (label, seconds, {pid: RSS MiB}, requests)
    problems: list[str] = []
    started = time.monotonic()
    measured_from = started + args.warmup
    until = measured_from + args.minutes * 60
    clients = [Client(base, stats, random.Random(args.seed * 1000 + n)) for n in range(args.clients)]
    # Rates are for all clients together; each client gets its share.
    login_interval = 60 * args.clients / args.logins_per_minute if args.logins_per_minute > 0 else float("inf")
    refresh_interval = 60 * args.clients / args.refreshes_per_minute if args.refreshes_per_minute > 0 else float("inf")
    tasks = [asyncio.create_task(client.run(until, login_interval, refresh_interval)) for client in clients]

    def sample(label: str) -> None:
        now = server.workers()
        if now != workers:
            problems.append(f"the workers changed during the run: {workers} -> {now} (one died or was replaced)")
        rss = {pid: h.memory_mb(pid)["rss_mb"] for pid in workers}
        samples.append((label, time.monotonic() - started, rss, stats.total))
        print(
            f"  {label:>6}  t={samples[-1][1]:6.0f}s  requests={stats.total:7d}  "
            + "  ".join(f"{pid}: {mib:6.1f} MiB" if mib else f"{pid}: gone" for pid, mib in rss.items()),
            flush=True,
        )

    print(
        f"warming up for {args.warmup:.0f} s with {args.clients} clients, then {args.minutes:g} minutes measured; "
        f"{args.logins_per_minute:g} guest logins and {args.refreshes_per_minute:g} token refreshes a minute",
        flush=True,
    )
    await asyncio.sleep(max(0.0, measured_from - time.monotonic()))
    sample("start")
    minute = 1
    while True:
        next_sample = measured_from + minute * 60
        if next_sample >= until:
            break
        await asyncio.sleep(max(0.0, next_sample - time.monotonic()))
        sample(f"{minute} min")
        minute += 1
    await asyncio.gather(*tasks)
    sample("end")
    return stats, samples, problems


def report(stats: Stats, samples: list, workers: list[int], args: argparse.Namespace, problems: list[str], seconds: float) -> int:
    print("\n== RSS per worker (VmRSS, MiB)")
    print(f"  {'sample':>6}  {'t (s)':>6}  {'requests':>8}  " + "  ".join(f"{'pid ' + str(pid):>12}" for pid in workers))
    for label, at, rss, total in samples:
        print(
            f"  {label:>6}  {at:6.0f}  {total:8d}  "
            + "  ".join(f"{rss[pid]:12.1f}" if rss[pid] else f"{'gone':>12}" for pid in workers)
        )
    print("\n== Growth from start to end")
    start, end = samples[0][2], samples[-1][2]
    for pid in workers:
        if not start[pid] or not end[pid]:
            problems.append(f"worker {pid}: no RSS at start or end")
            continue
        growth = (end[pid] - start[pid]) / start[pid]
        verdict = "ok" if growth <= args.max_growth else f"MORE THAN {args.max_growth:.0%}"
        print(f"  worker {pid}: {start[pid]:.1f} -> {end[pid]:.1f} MiB ({growth:+.1%}) {verdict}")
        if growth > args.max_growth:
            problems.append(f"worker {pid} grew by {growth:.1%} (limit {args.max_growth:.0%})")

    print(f"\n== Requests: {stats.total} in {seconds:.0f} s ({stats.total / seconds:.0f}/s), by status")
    for status, count in sorted(stats.by_status.items()):
        label = "stream without [DONE]" if status == -1 else str(status)
        print(f"  {label:>6}: {count}")
    print("\n== By operation and status")
    for (operation, status), count in sorted(stats.by_operation.items()):
        print(f"  {operation:<36} {status:>4}: {count}")
    errors_5xx = sum(count for status, count in stats.by_status.items() if status >= 500)
    print(
        f"\n== Errors: {errors_5xx} 5xx, {sum(stats.unexpected.values())} unexpected answers, "
        f"{sum(stats.transport_errors.values())} transport errors"
    )
    for (operation, status), count in sorted(stats.unexpected.items()):
        print(f"  unexpected: {operation} -> {status}: {count}")
    for example in stats.examples:
        print(f"    e.g. {example}")
    for what, count in sorted(stats.transport_errors.items()):
        print(f"  transport: {what}: {count}")
    if errors_5xx:
        problems.append(f"{errors_5xx} answers were 5xx")
    if stats.unexpected:
        problems.append(f"{sum(stats.unexpected.values())} answers were not the expected status")
    if stats.transport_errors:
        problems.append(f"{sum(stats.transport_errors.values())} requests failed at the transport level")
    print()
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print(f"PASS: no 5xx, no unexpected answer, every worker's RSS within {args.max_growth:.0%} of its start")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10, help="measured traffic, after the warm-up (default 10)")
    parser.add_argument("--warmup", type=float, default=30, help="seconds of traffic before the start sample (default 30)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="llm-api serve --workers (default 2)")
    parser.add_argument("--max-growth", type=float, default=0.20, help="allowed RSS growth per worker, a fraction (default 0.20)")
    parser.add_argument(
        "--logins-per-minute", type=float, default=60, help="new guests a minute, all clients together (default 60)"
    )
    parser.add_argument(
        "--refreshes-per-minute", type=float, default=60, help="token refreshes a minute, all clients together (default 60)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the clients' choices")
    parser.add_argument(
        "--admin-dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="where to create (and drop) the scratch database",
    )
    args = parser.parse_args()

    port, upstream_port = h.free_port(), h.free_port()
    base = f"http://127.0.0.1:{port}"
    servers: list[h.Server] = []
    with h.fresh_database(args.admin_dsn) as dsn:
        try:
            servers.append(h.start_fake_upstream(upstream_port, chunks=8, name="soak-upstream"))
            env = h.gateway_env(port=port, dsn=dsn, secret=secrets.token_urlsafe(48), upstream_port=upstream_port)
            server = h.start_gateway(env, args.workers, name="soak-llm-api")
            servers.append(server)
            deadline = time.monotonic() + 30
            while len(workers := server.workers()) != args.workers:
                if time.monotonic() > deadline:
                    sys.exit(f"expected {args.workers} workers under {server.pid}, found {workers}")
                time.sleep(0.2)
            print(f"llm-api serve (pid {server.pid}) on {base}, workers {workers}, log {server.log_path}", flush=True)

            began = time.monotonic()
            stats, samples, problems = asyncio.run(drive(base, args, server, workers))
            status = report(stats, samples, workers, args, problems, time.monotonic() - began)
            if status:
                print(f"\nlast lines of the service's log ({server.log_path}):\n{server.log_tail(20)}")
            return status
        finally:
            for running in reversed(servers):
                running.stop(grace=45)


if __name__ == "__main__":
    sys.exit(main())
