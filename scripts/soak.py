"""Soak test: minutes of mixed traffic against `llm-api serve --workers N`; each worker's memory must stay flat.

    .venv/bin/python scripts/soak.py [--minutes 10] [--clients 8] [--workers 2] [--max-growth 0.20]

Not part of CI (it takes the whole --minutes). It creates a fresh database on the PostgreSQL at
127.0.0.1:5432 (`--admin-dsn`; dropped at the end), starts the benchmark fake vLLM
(scripts/bench/fake_upstream.py, serving jan-v1-4b) and `llm-api serve --workers N` on it, then lets
`--clients` concurrent clients send mixed traffic: guest logins and token refreshes, chats plain and
streamed, with and without a conversation, conversations (create, list, get, items, delete), settings
(get, patch), API keys (create, use, delete), the model list, and requests that must fail (400, 401, 404).

Identity churn is paced, not flat out: --logins-per-minute new guests and --refreshes-per-minute token
refreshes (60 each by default, all clients together). Each worker remembers the access tokens it verified,
the users it saw and their settings, up to 10,000 of each (llm_api/auth/tokens.py, auth/users.py,
user_settings.py; about 2 KB per token), so a worker grows until those are full, about 20 MiB for the
tokens alone: bounded, not a leak, but enough to hide one. At the default rates they stay small over a
run; raise the rates and --minutes to watch them fill and level off.

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
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
MODEL = "jan-v1-4b"


# --- processes -------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def psql(admin_dsn: str, sql: str) -> None:
    subprocess.run(["psql", admin_dsn, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the serving workers of the gunicorn arbiter)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may contain spaces, so split after its closing parenthesis
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def wait_until(url: str, process: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    """Until ``url`` answers 200; the process exiting first, or ``seconds`` passing, ends the run."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{' '.join(map(str, process.args))} exited:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url}: no answer in {seconds:.0f} s\n{log.read_text()[-4000:]}")


# --- traffic ---------------------------------------------------------------------------------------------------

@dataclass
class Stats:
    by_operation: Counter = field(default_factory=Counter)  # (operation, status) -> count
    by_status: Counter = field(default_factory=Counter)
    unexpected: Counter = field(default_factory=Counter)     # (operation, status) -> count
    examples: list[str] = field(default_factory=list)        # the first few unexpected answers, with their bodies
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
        self.next_login = 0.0    # time.monotonic() when this client becomes a new guest
        self.next_refresh = 0.0  # ... and when it refreshes its tokens

    async def request(self, operation: str, method: str, path: str, expected: tuple[int, ...], *,
                      body: object = None, raw: bytes | None = None, headers: dict | None = None,
                      auth: bool = True, stream: bool = False) -> tuple[int, object]:
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
        _, tokens = await self.request("refresh token", "POST", "/auth/refresh-token", (200,),
                                       body={"refresh_token": self.refresh_token}, auth=False)
        self.token, self.refresh_token = tokens["access_token"], tokens["refresh_token"]

    async def me(self) -> None:
        await self.request("me", "GET", "/auth/me", (200,))

    # ---- chats
    def _chat(self, stream: bool, conversation: str | None) -> dict:
        words = " ".join(self.rng.choice(["hello", "bonjour", "soak", "memory", "flat", "worker"]) for _ in range(8))
        body: dict = {"model": MODEL, "messages": [{"role": "system", "content": "You are terse."},
                                                   {"role": "user", "content": words}],
                      "max_tokens": 32, "temperature": 0.2}
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
        _, conversation = await self.request("conversation create", "POST", "/v1/conversations", (200,),
                                             body={"title": f"soak {self.rng.randrange(10**6)}", "metadata": {"soak": "yes"}})
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
        await self.request("settings patch", "PATCH", "/v1/users/me/settings", (200,), body={
            "profile_settings": {"nick_name": f"soak{self.rng.randrange(1000)}"},
            "memory_config": {"max_user_items": self.rng.randrange(21)},
            "preferences": {"theme": self.rng.choice(["dark", "light"])},
        })

    async def api_key(self) -> None:
        _, key = await self.request("api key create", "POST", "/auth/api-keys", (201,), body={"name": "soak", "expires_in_days": 1})
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
            await self.request("4xx: unknown model", "POST", "/v1/chat/completions", (404,),
                               body={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]})
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

async def drive(base: str, args: argparse.Namespace, server_pid: int, workers: list[int]) -> tuple[Stats, list, list[str]]:
    stats = Stats()
    samples: list[tuple[str, float, dict[int, int | None], int]] = []  # (label, seconds, {pid: KiB}, requests)
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
        now = children(server_pid)
        if now != workers:
            problems.append(f"the workers changed during the run: {workers} -> {now} (one died or was replaced)")
        samples.append((label, time.monotonic() - started, {pid: rss_kib(pid) for pid in workers}, stats.total))
        row = samples[-1]
        print(f"  {label:>6}  t={row[1]:6.0f}s  requests={row[3]:7d}  "
              + "  ".join(f"{pid}: {kib / 1024:6.1f} MiB" if kib else f"{pid}: gone" for pid, kib in row[2].items()),
              flush=True)

    print(f"warming up for {args.warmup:.0f} s with {args.clients} clients, then {args.minutes:g} minutes measured; "
          f"{args.logins_per_minute:g} guest logins and {args.refreshes_per_minute:g} token refreshes a minute", flush=True)
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
        print(f"  {label:>6}  {at:6.0f}  {total:8d}  "
              + "  ".join(f"{rss[pid] / 1024:12.1f}" if rss[pid] else f"{'gone':>12}" for pid in workers))
    print("\n== Growth from start to end")
    start, end = samples[0][2], samples[-1][2]
    for pid in workers:
        if not start[pid] or not end[pid]:
            problems.append(f"worker {pid}: no RSS at start or end")
            continue
        growth = (end[pid] - start[pid]) / start[pid]
        verdict = "ok" if growth <= args.max_growth else f"MORE THAN {args.max_growth:.0%}"
        print(f"  worker {pid}: {start[pid] / 1024:.1f} -> {end[pid] / 1024:.1f} MiB ({growth:+.1%}) {verdict}")
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
    print(f"\n== Errors: {errors_5xx} 5xx, {sum(stats.unexpected.values())} unexpected answers, "
          f"{sum(stats.transport_errors.values())} transport errors")
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
        print("PASS: no 5xx, no unexpected answer, every worker's RSS within "
              f"{args.max_growth:.0%} of its start")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10, help="measured traffic, after the warm-up (default 10)")
    parser.add_argument("--warmup", type=float, default=30, help="seconds of traffic before the start sample (default 30)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="llm-api serve --workers (default 2)")
    parser.add_argument("--max-growth", type=float, default=0.20, help="allowed RSS growth per worker, a fraction (default 0.20)")
    parser.add_argument("--logins-per-minute", type=float, default=60,
                        help="new guests a minute, all clients together (default 60)")
    parser.add_argument("--refreshes-per-minute", type=float, default=60,
                        help="token refreshes a minute, all clients together (default 60)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the clients' choices")
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="where to create (and drop) the scratch database")
    args = parser.parse_args()

    venv_bin = Path(sys.executable).parent
    database = f"llm_api_soak_{os.getpid()}_{secrets.token_hex(3)}"
    port, upstream_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    scratch = Path(tempfile.mkdtemp(prefix="llm-api-soak-"))
    processes: list[subprocess.Popen] = []
    created = False
    try:
        psql(args.admin_dsn, f'CREATE DATABASE "{database}"')
        created = True
        dsn = args.admin_dsn.rsplit("/", 1)[0] + f"/{database}?sslmode=disable"
        upstream_log = scratch / "upstream.log"
        processes.append(subprocess.Popen(
            [sys.executable, str(ROOT / "scripts/bench/fake_upstream.py"), "--port", str(upstream_port), "--model", MODEL,
             "--chunks", "8"],
            stdout=upstream_log.open("w"), stderr=subprocess.STDOUT,
        ))
        wait_until(f"http://127.0.0.1:{upstream_port}/v1/models", processes[-1], upstream_log)
        env = {name: value for name, value in os.environ.items() if not name.startswith((
            "OPENAI_", "ANTHROPIC_", "OLLAMA_", "KEYCLOAK_", "MEMORY_", "MEDIA_", "PROVIDERS_", "PROMETHEUS_", "OTEL_",
        )) and name not in ("JWKS_URL", "ISSUER", "GATEWAY_SHARED_SECRET", "ADMIN_API_KEY", "WORKERS")}
        env.update({
            "DB_POSTGRESQL_WRITE_DSN": dsn, "LLM_API_SECRET_KEY": secrets.token_urlsafe(48),
            "LLM_API_DATA_DIR": str(scratch / "data"), "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port),
            "VLLM_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1", "RATE_LIMIT_PER_MINUTE": "0",
            "LOG_LEVEL": "warning", "OPENAPI_STRICT_VALIDATION": "false",
        })
        server_log = scratch / "serve.log"
        server = subprocess.Popen([str(venv_bin / "llm-api"), "serve", "--workers", str(args.workers)], env=env,
                                  stdout=server_log.open("w"), stderr=subprocess.STDOUT)
        processes.append(server)
        wait_until(f"{base}/v1/readyz", server, server_log)
        deadline = time.monotonic() + 30
        while len(workers := children(server.pid)) != args.workers:
            if time.monotonic() > deadline:
                sys.exit(f"expected {args.workers} workers under {server.pid}, found {workers}")
            time.sleep(0.2)
        print(f"llm-api serve (pid {server.pid}) on {base}, workers {workers}, database {database}", flush=True)

        began = time.monotonic()
        stats, samples, problems = asyncio.run(drive(base, args, server.pid, workers))
        seconds = time.monotonic() - began
        status = report(stats, samples, workers, args, problems, seconds)
        if status:
            print(f"\nlast lines of the service's log ({server_log}):\n" + "\n".join(server_log.read_text().splitlines()[-20:]))
        return status
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=45)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if created:
            psql(args.admin_dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
