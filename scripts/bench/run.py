"""The gateway benchmark: llm-api against the same upstream called directly, and against LiteLLM proxy.

    .venv/bin/python scripts/bench/run.py [--duration 10] [--workers 2] [--quick] [--rounds 1] [--principals 1]

What it does, in one invocation:
    1. starts fake_upstream.py (canned answers, microseconds each) on a free port;
    2. creates a fresh database, starts ``llm-api serve --workers N`` on it (the default settings but an
       external DSN, the fake as ``VLLM_BASE_URL``, ``LOG_LEVEL=warning`` and a rate limit that is on
       but never reached), stops it and starts it again: start-to-healthy is timed for both starts
       (the first one applies the migrations);
    3. logs in ``--principals`` guests and creates one conversation each (for the persistence cases);
    4. starts LiteLLM proxy 1.108 with as many workers when its separate virtualenv exists
       (``--litellm``, default /work/bench-venvs/litellm/bin/litellm; ``--no-litellm`` skips it);
    5. runs every case -- non-streamed at c=1, 16, 64 and streamed (20 chunks) at c=1, 16 -- against
       each target: ``direct`` (the fake itself), ``llm-api``, ``llm-api+conv`` (the same with
       ``"conversation": id``, so the exchange is stored) and ``litellm``. Targets take turns within a
       case, starting with a different one in each case, so that machine noise hits all alike. Every
       measurement follows a warm-up at the same concurrency. Non-streamed cases use wrk
       (wrk_chat.lua), streamed ones loadgen.py, which also times the first chunk;
    6. reads, while each measurement runs, the connections each worker holds, and around it each
       process's CPU time: how the load spread over the workers, and what the upstream, the client
       and the whole machine used; after the run, each worker's RSS and PSS;
    7. writes results/<output>.json (everything) and results/<output>.md (the tables, the targets
       checked), and prints the markdown. ``--output`` defaults to ``latest`` (``quick`` with --quick).

Read the ratios, not the absolute times: everything (clients, servers, PostgreSQL) shares the
machine's cores. docs/performance.md says what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h


@dataclass(frozen=True)
class Case:
    stream: bool
    concurrency: int

    @property
    def label(self) -> str:
        return f"{'streamed' if self.stream else 'non-streamed'} c={self.concurrency}"


CASES = [Case(False, 1), Case(False, 16), Case(False, 64), Case(True, 1), Case(True, 16)]
NON_STREAMED_C1, NON_STREAMED_C64, STREAMED_C1 = Case(False, 1), Case(False, 64), Case(True, 1)

# The targets, checked on every run: (key in the summary, text, limit, "max" or "min").
TARGETS = [
    ("added_p50_ms", "added latency, non-streamed c=1, p50 (llm-api − direct)", 1.0, "max", "ms"),
    ("added_ttfc_ms", "added time to first chunk, streamed c=1, p50 (llm-api − direct)", 2.0, "max", "ms"),
    ("rps_vs_litellm_c64", "throughput non-streamed c=64, llm-api / LiteLLM", 15.0, "min", "×"),
    ("persistence_delta_ms", "persistence cost, non-streamed c=1, p50 (llm-api+conv − llm-api)", 2.0, "max", "ms"),
    ("rss_max_mb", "RSS per llm-api worker after the run (largest)", 100.0, "max", "MB"),
    ("start_to_healthy_s", "start to healthy, external database (restart)", 2.0, "max", "s"),
]


@dataclass
class Target:
    """One way to reach the upstream: its URL, the server whose processes are watched, its requests."""

    name: str
    url: str
    server: h.Server
    lines: dict[bool, list[tuple[str, dict]]]  # stream? -> (bearer token, body) lines
    files: dict[bool, Path] = field(default_factory=dict)

    def requests_file(self, stream: bool) -> Path:
        if stream not in self.files:
            path = h.LOGS / f"requests-{self.name}-{'stream' if stream else 'plain'}.tsv"
            self.files[stream] = h.write_requests(path, self.lines[stream])
        return self.files[stream]


# --- setting up -------------------------------------------------------------------------------------------------

def start_gateway_twice(env: dict[str, str], workers: int) -> tuple[h.Server, dict]:
    """Start llm-api on the fresh database (migrations run), stop it, start it again; time both."""
    first = h.start_gateway(env, workers, name="llm-api-first-start")
    fresh = first.healthy_after
    first.stop()
    gateway = h.start_gateway(env, workers)
    return gateway, {"llm-api (fresh database, migrations)": fresh, "llm-api (restart)": gateway.healthy_after}


def login_principals(base: str, count: int) -> list[tuple[str, str]]:
    """(access token, conversation id) of ``count`` new guests."""
    principals = []
    for _ in range(count):
        status, answer = h.http("POST", f"{base}/auth/guest-login")
        if status != 201:
            raise RuntimeError(f"guest login answered {status}: {answer}")
        token = answer["access_token"]
        status, conversation = h.http("POST", f"{base}/v1/conversations", {"title": "bench"}, token)
        if status not in (200, 201):
            raise RuntimeError(f"creating a conversation answered {status}: {conversation}")
        principals.append((token, conversation["id"]))
    return principals


def wait_model_listed(base: str, token: str, server: h.Server, timeout: float = 30) -> float:
    """Seconds from the gateway's start until /v1/models lists the fake's model (read at start-up)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        status, answer = h.http("GET", f"{base}/v1/models", token=token)
        if status == 200 and any(m.get("id") == h.GATEWAY_MODEL for m in answer.get("data", [])):
            return time.perf_counter() - server.started_at
        time.sleep(0.05)
    raise RuntimeError(f"{h.GATEWAY_MODEL} not listed by llm-api after {timeout} s")


def build_targets(upstream: h.Server, gateway: h.Server, litellm: h.Server | None,
                  principals: list[tuple[str, str]]) -> list[Target]:
    def url(server: h.Server) -> str:
        return f"http://127.0.0.1:{server.port}/v1/chat/completions"

    def lines(model: str, tokens: list[str], conversations: list[str | None]) -> dict[bool, list]:
        return {stream: [(t, h.chat_body(model, stream=stream, conversation=c)) for t, c in zip(tokens, conversations)]
                for stream in (False, True)}

    tokens = [token for token, _ in principals]
    none = [None] * len(principals)
    targets = [
        Target("direct", url(upstream), upstream, lines(h.UPSTREAM_MODEL, [""], [None])),
        Target("llm-api", url(gateway), gateway, lines(h.GATEWAY_MODEL, tokens, none)),
        Target("llm-api+conv", url(gateway), gateway, lines(h.GATEWAY_MODEL, tokens, [c for _, c in principals])),
    ]
    if litellm is not None:
        targets.append(Target("litellm", url(litellm), litellm, lines(h.UPSTREAM_MODEL, [h.LITELLM_KEY], [None])))
    return targets


def check_targets(targets: list[Target]) -> None:
    """One plain and one streamed request per target, before any load: a broken set-up fails here."""
    for target in targets:
        for stream in (False, True):
            token, body = target.lines[stream][0]
            status, answer = h.http("POST", target.url, body, token or None)
            text = answer if isinstance(answer, str) else json.dumps(answer)
            ok = status == 200 and ("[DONE]" in text if stream else "word19" in text)
            if target.name.endswith("+conv") and not stream:
                ok = ok and isinstance(answer, dict) and "conversation" in answer
            if not ok:
                raise RuntimeError(f"{target.name} ({'streamed' if stream else 'plain'}) answered {status}: {text[:500]}")


# --- measuring --------------------------------------------------------------------------------------------------

def measure(target: Target, case: Case, upstream: h.Server, duration: int, warmup: int, use_wrk: bool,
            dbname: str) -> dict:
    """One measurement of one target in one case, after a warm-up; with CPU and connection spread."""
    kind = "wrk" if use_wrk and not case.stream else "python"
    requests = target.requests_file(case.stream)
    if warmup:
        h.start_load(kind, target.url, requests, case.concurrency, warmup).result()

    workers = target.server.workers()
    upstream_pids = list(upstream.processes())
    server_pids = list(target.server.processes())
    database_pids = h.postgres_backends(dbname)  # the gateway's pooled connections, open since start-up
    cpu_before = {pid: h.cpu_seconds(pid) for pid in {*server_pids, *upstream_pids, *database_pids}}
    machine_before, client_before, started = h.machine_busy_seconds(), h.children_cpu_seconds(), time.perf_counter()

    load = h.start_load(kind, target.url, requests, case.concurrency, duration)
    time.sleep(duration / 2)  # mid-run: every connection is open
    connections = h.established_connections(workers, target.server.port)
    result = load.result()

    wall = time.perf_counter() - started
    cpu = {pid: h.cpu_seconds(pid) - before for pid, before in cpu_before.items()}
    worker_cpu = sum(cpu[pid] for pid in workers) or 1e-9
    client = h.children_cpu_seconds() - client_before
    machine = h.machine_busy_seconds() - machine_before
    return {
        "target": target.name, "case": case.label, "stream": case.stream, "concurrency": case.concurrency,
        "client": kind, **result,
        "workers": [{"pid": pid, "cpu_s": round(cpu[pid], 3), "cpu_share": round(cpu[pid] / worker_cpu, 3),
                     "connections": connections.get(pid, 0)} for pid in workers],
        "cpu_cores": {  # CPU seconds per second of the measurement: 1.0 is one core busy
            "server": round(sum(cpu[pid] for pid in server_pids) / wall, 2),
            "upstream": round(sum(cpu[pid] for pid in upstream_pids) / wall, 2),
            "client": round(client / wall, 2),
            "postgres": round(sum(cpu[pid] for pid in database_pids) / wall, 2),
            # Everything else: PostgreSQL's shared processes (WAL writer, checkpointer), the kernel's
            # softirqs, this script, and whatever else runs on the machine (noise to watch for).
            "other": round(max(machine - client - sum(cpu.values()), 0) / wall, 2),
            "machine": round(machine / wall, 2),
        },
    }


def run_matrix(targets: list[Target], upstream: h.Server, args: argparse.Namespace) -> list[dict]:
    use_wrk = h.wrk_available() and not args.python_client
    runs, total, done = [], args.rounds * len(CASES) * len(targets), 0
    for round_index in range(args.rounds):
        for case_index, case in enumerate(CASES):
            shift = (case_index + round_index) % len(targets)
            for target in targets[shift:] + targets[:shift]:  # a different target goes first in each case
                record = measure(target, case, upstream, args.duration, args.warmup, use_wrk, args.dbname)
                record["round"] = round_index
                runs.append(record)
                done += 1
                print(f"[{done}/{total}] {case.label:<18} {target.name:<13} {_progress(record)}", file=sys.stderr, flush=True)
    return runs


def _progress(record: dict) -> str:
    text = f"{record['rps']:9.1f} rps  p50 {record['latency_ms']['p50']:8.3f} ms  p99 {record['latency_ms']['p99']:8.3f} ms"
    if record["ttfc_ms"]:
        text += f"  ttfc p50 {record['ttfc_ms']['p50']:8.3f} ms"
    if record["errors"]:
        text += f"  errors {record['errors']}"
    return text


# --- summarising ------------------------------------------------------------------------------------------------

def combine(runs: list[dict]) -> dict[tuple[str, str], dict]:
    """(case, target) -> the median over rounds of each figure (one round: that round's figures)."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        grouped.setdefault((run["case"], run["target"]), []).append(run)

    def median(rows: list[dict], *path: str) -> float | None:
        values = []
        for row in rows:
            value = row
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                values.append(value)
        return statistics.median(values) if values else None

    combined = {}
    for key, rows in grouped.items():
        errors: dict[str, int] = {}
        for row in rows:
            for kind, count in row["errors"].items():
                errors[kind] = errors.get(kind, 0) + count
        combined[key] = {
            "rps": median(rows, "rps"), "p50": median(rows, "latency_ms", "p50"), "p99": median(rows, "latency_ms", "p99"),
            "ttfc_p50": median(rows, "ttfc_ms", "p50"), "ttfc_p99": median(rows, "ttfc_ms", "p99"),
            "errors": errors, "requests": sum(row["requests"] for row in rows),
            "spread": _spread(rows), "cpu_cores": rows[-1]["cpu_cores"],
        }
    return combined


def _spread(rows: list[dict]) -> str:
    """Each worker's share of the server's CPU (and its connections), over all rounds: '52%/48% (8/8)'."""
    if len(rows[0]["workers"]) < 2:
        return ""
    shares = [statistics.mean(row["workers"][i]["cpu_share"] for row in rows if len(row["workers"]) > i)
              for i in range(len(rows[0]["workers"]))]
    conns = [str(w["connections"]) for w in rows[-1]["workers"]]
    return "/".join(f"{share:.0%}" for share in shares) + f" ({'/'.join(conns)})"


def summarise(combined: dict, memory: dict, startup: dict) -> dict:
    def figure(case: Case, target: str, name: str) -> float | None:
        row = combined.get((case.label, target))
        return row[name] if row else None

    def difference(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    workers = [p for p in memory.get("llm-api", []) if p["role"] == "worker"]
    headroom = [ratio(figure(case, "direct", "rps"), figure(case, "llm-api", "rps")) for case in CASES]
    return {
        "added_p50_ms": difference(figure(NON_STREAMED_C1, "llm-api", "p50"), figure(NON_STREAMED_C1, "direct", "p50")),
        "added_ttfc_ms": difference(figure(STREAMED_C1, "llm-api", "ttfc_p50"), figure(STREAMED_C1, "direct", "ttfc_p50")),
        "rps_vs_litellm_c64": ratio(figure(NON_STREAMED_C64, "llm-api", "rps"), figure(NON_STREAMED_C64, "litellm", "rps")),
        "persistence_delta_ms": difference(figure(NON_STREAMED_C1, "llm-api+conv", "p50"),
                                           figure(NON_STREAMED_C1, "llm-api", "p50")),
        "rss_max_mb": max((p["rss_mb"] for p in workers), default=None),
        "pss_max_mb": max((p["pss_mb"] for p in workers if p["pss_mb"] is not None), default=None),
        "start_to_healthy_s": startup.get("llm-api (restart)"),
        "start_to_healthy_fresh_s": startup.get("llm-api (fresh database, migrations)"),
        # How much faster the direct path ran than llm-api, per case: the clients had at least this headroom.
        "client_headroom_min": min((x for x in headroom if x is not None), default=None),
    }


def memory_report(servers: list[h.Server]) -> dict[str, list[dict]]:
    return {server.name: [{"pid": pid, "role": role, **h.memory_mb(pid)} for pid, role in server.processes().items()]
            for server in servers}


# --- rendering --------------------------------------------------------------------------------------------------

def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


RESULTS_LEGEND = (
    "Latencies in ms (TTFC: time to the first `data:` line). `+p50`: p50 minus the direct path's in the same case. "
    "`spread`: each worker's share of the server's CPU during the measurement (connections each held, mid-run). "
    "`cores`: CPU used, in cores, by the server / the fake upstream / the load client / PostgreSQL's backends "
    "for llm-api's connections / everything else on the machine (noise, shared PostgreSQL processes)."
)


def render(report: dict) -> str:
    sections = [_render_header(report["meta"]), _render_targets(report["summary"]),
                _render_results(report["combined"], report["targets"]), _render_memory(report)]
    return "\n\n".join(sections) + "\n"


def _render_header(meta: dict) -> str:
    text = (f"## Gateway benchmark, {meta['date']}\n\n"
            f"Commit `{meta['commit']}`, {meta['workers']} worker(s) for llm-api and LiteLLM, {meta['duration_s']} s "
            f"per measurement after a {meta['warmup_s']} s warm-up, {meta['rounds']} round(s) (medians), "
            f"{meta['principals']} principal(s), {meta['cpus']} CPUs, {meta['chunks']} chunks per stream.")
    if meta["quick"]:
        text += " **Quick run: short measurements, noisy.**"
    if meta["background_cores"] > 0.2:
        text += (f"\n\n**The machine was not idle**: {meta['background_cores']:.2f} cores busy before the run with "
                 "every server idle (see the `other` column below): absolute figures are pessimistic, ratios less so.")
    return text


def _render_targets(summary: dict) -> str:
    lines = ["### Targets", "", "| Check | Measured | Target | |", "| --- | ---: | ---: | --- |"]
    for key, text, limit, kind, unit in TARGETS:
        value = summary.get(key)
        met = value is not None and (value <= limit if kind == "max" else value >= limit)
        verdict = "n/a" if value is None else ("ok" if met else "**MISSED**")
        measured = "–" if value is None else f"{value:.2f} {unit}"
        lines.append(f"| {text} | {measured} | {'≤' if kind == 'max' else '≥'} {limit:g} {unit} | {verdict} |")
    lines += ["", (f"Other figures: first start on a fresh database (migrations) "
                   f"{_fmt(summary['start_to_healthy_fresh_s'])} s; largest PSS of a worker "
                   f"{_fmt(summary['pss_max_mb'], 1)} MB; the direct path ran at least "
                   f"{_fmt(summary['client_headroom_min'], 1)}× llm-api's rate in every case (the clients' headroom).")]
    return "\n".join(lines)


def _render_results(combined: dict, targets: list[str]) -> str:
    lines = ["### Results", "", RESULTS_LEGEND, "",
             "| case | target | rps | p50 | p99 | +p50 | TTFC p50 | TTFC p99 | errors | spread | cores srv/up/cli/pg/other |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |"]
    for case in CASES:
        direct = combined.get((case.label, "direct"))
        for target in targets:
            row = combined.get((case.label, target))
            if row is None:
                continue
            added = "" if direct is None or target == "direct" else _fmt(row["p50"] - direct["p50"], 3)
            ttfc = [_fmt(row["ttfc_p50"], 3), _fmt(row["ttfc_p99"], 3)] if case.stream else ["", ""]
            errors = ", ".join(f"{k} {v}" for k, v in row["errors"].items()) or "0"
            cores = "/".join(str(row["cpu_cores"][k]) for k in ("server", "upstream", "client", "postgres", "other"))
            cells = [case.label, target, f"{row['rps']:.0f}", _fmt(row["p50"], 3), _fmt(row["p99"], 3), added, *ttfc,
                     errors, row["spread"], cores]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _render_memory(report: dict) -> str:
    lines = ["### Memory after the run and start-up", "",
             "| server | pid | role | RSS MB | PSS MB |", "| --- | ---: | --- | ---: | ---: |"]
    for server, processes in report["memory"].items():
        for proc in processes:
            lines.append(f"| {server} | {proc['pid']} | {proc['role']} | {_fmt(proc['rss_mb'], 1)} | "
                         f"{_fmt(proc['pss_mb'], 1)} |")
    lines += ["", "| server | start → healthy (s) |", "| --- | ---: |"]
    lines += [f"| {name} | {_fmt(seconds)} |" for name, seconds in report["startup"].items()]
    return "\n".join(lines)


def _commit() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], check=False, cwd=h.ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", "llm_api") else "")


# --- the command ------------------------------------------------------------------------------------------------

def main() -> None:
    args = _parser().parse_args()
    if args.quick:
        args.duration, args.warmup = min(args.duration, 2), min(args.warmup, 1)
    output = args.output or ("quick" if args.quick else "latest")
    h.RESULTS.mkdir(parents=True, exist_ok=True)
    litellm_binary = None if args.no_litellm or not args.litellm.exists() else args.litellm
    started = time.perf_counter()

    with ExitStack() as stack:
        upstream = h.start_fake_upstream(h.free_port(), args.upstream_workers, args.chunks)
        stack.callback(upstream.stop)
        dsn = stack.enter_context(h.fresh_database(args.dsn))
        args.dbname = re.search(r"dbname=(\S+)", dsn).group(1)
        env = h.gateway_env(port=h.free_port(), dsn=dsn, secret="bench-" + "k" * 40, upstream_port=upstream.port)
        gateway, startup = start_gateway_twice(env, args.workers)
        stack.callback(gateway.stop)  # before the database is dropped (the stack unwinds in reverse)
        base = f"http://127.0.0.1:{gateway.port}"
        principals = login_principals(base, args.principals)
        startup["llm-api (restart): model listed"] = wait_model_listed(base, principals[0][0], gateway)

        litellm = None
        if litellm_binary is not None:
            print(f"starting LiteLLM proxy ({litellm_binary}) ...", file=sys.stderr, flush=True)
            litellm = h.start_litellm(litellm_binary, h.free_port(), upstream.port, args.workers)
            stack.callback(litellm.stop)
            startup["litellm"] = litellm.healthy_after
        else:
            print(f"LiteLLM proxy not run ({'--no-litellm' if args.no_litellm else f'{args.litellm} not found'})",
                  file=sys.stderr)

        targets = build_targets(upstream, gateway, litellm, principals)
        check_targets(targets)
        background = _background_load()
        runs = run_matrix(targets, upstream, args)
        memory = memory_report([s for s in (gateway, litellm, upstream) if s is not None])

    combined = combine(runs)
    report = {
        "meta": {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "commit": _commit(),
            "workers": args.workers, "duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds,
            "principals": args.principals, "chunks": args.chunks, "quick": args.quick, "cpus": _cpus(),
            "python": platform.python_version(), "litellm": str(litellm_binary) if litellm_binary else None,
            "elapsed_s": round(time.perf_counter() - started, 1), "background_cores": background,
        },
        "targets": [t.name for t in targets],
        "summary": summarise(combined, memory, startup),
        "startup": startup, "memory": memory,
        "combined": {f"{case} | {target}": row for (case, target), row in combined.items()},
        "runs": runs,
    }
    markdown = render({**report, "combined": combined})
    (h.RESULTS / f"{output}.json").write_text(json.dumps(report, indent=2) + "\n")
    (h.RESULTS / f"{output}.md").write_text(markdown)
    print(markdown)
    print(f"written: {h.RESULTS / (output + '.md')} and .json ({report['meta']['elapsed_s']} s)", file=sys.stderr)


def _background_load(seconds: float = 2.0) -> float:
    """Cores busy while every server is idle: another job on the machine skews every figure."""
    before = h.machine_busy_seconds()
    time.sleep(seconds)
    return round((h.machine_busy_seconds() - before) / seconds, 2)


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each measurement (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="workers of llm-api and of LiteLLM (default 2)")
    parser.add_argument("--quick", action="store_true", help="2 s measurements, 1 s warm-ups: a check that it all works")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole matrix; figures are medians (default 1)")
    parser.add_argument("--principals", type=int, default=1,
                        help="guests (each with a conversation) the requests rotate over (default 1)")
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per streamed answer (default 20)")
    parser.add_argument("--upstream-workers", type=int, default=1, help="processes of the fake upstream (default 1)")
    parser.add_argument("--dsn", default=h.DEFAULT_ADMIN_DSN, help="where to create the scratch database")
    parser.add_argument("--litellm", type=Path, default=h.DEFAULT_LITELLM, help="LiteLLM proxy's `litellm` executable")
    parser.add_argument("--no-litellm", action="store_true", help="do not run LiteLLM proxy")
    parser.add_argument("--python-client", action="store_true", help="use loadgen.py for non-streamed cases too")
    parser.add_argument("--output", help="results/<output>.md and .json (default latest; quick with --quick)")
    return parser


if __name__ == "__main__":
    main()
