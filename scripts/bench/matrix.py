"""Cases × targets, what run.py and chunks.py share: a target and a case, one measurement with each
process's CPU time around it, the whole matrix run in turns, rounds combined into medians, and the
tables and files every run writes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h


@dataclass(frozen=True)
class Case:
    """Plain or streamed requests at a concurrency; ``tokens``: the ``max_tokens`` sent, which is the
    number of words (content chunks, when streamed) the fake upstream answers; None: run.py's default."""

    stream: bool
    concurrency: int
    tokens: int | None = None

    @property
    def label(self) -> str:
        text = f"{'streamed' if self.stream else 'non-streamed'} c={self.concurrency}"
        return text + self._length

    @property
    def request_label(self) -> str:
        """What its requests are, whatever the concurrency."""
        return ("streamed" if self.stream else "non-streamed") + self._length

    @property
    def _length(self) -> str:
        return f", {self.tokens} {'chunks' if self.stream else 'words'}" if self.tokens else ""


@dataclass
class Target:
    """One way to reach the upstream: its URL, the server whose processes are watched, who calls it."""

    name: str
    url: str
    server: h.Server
    model: str
    principals: list[tuple[str, str | None]]  # (bearer token, conversation id or None): requests rotate over them
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (Portkey's routing)
    dbname: str | None = None  # the database whose PostgreSQL backends serve this target (llm-api's)
    third_party: bool = False  # a failed check is recorded in the results, not fatal: it is not ours to fix
    files: dict[Case, Path] = field(default_factory=dict)

    def lines(self, case: Case) -> list[tuple[str, dict]]:
        tokens = case.tokens or h.DEFAULT_MAX_TOKENS
        return [
            (token, h.chat_body(self.model, stream=case.stream, conversation=conversation, max_tokens=tokens))
            for token, conversation in self.principals
        ]

    def requests_file(self, case: Case) -> Path:
        if case not in self.files:
            kind = "stream" if case.stream else "plain"
            path = h.LOGS / f"requests-{self.name}-{kind}-{case.tokens or h.DEFAULT_MAX_TOKENS}.tsv"
            self.files[case] = h.write_requests(path, self.lines(case), self.headers)
        return self.files[case]


def url_of(server: h.Server) -> str:
    return f"http://127.0.0.1:{server.port}/v1/chat/completions"


# --- before any load --------------------------------------------------------------------------------------------


def check_targets(targets: list[Target], cases: list[Case]) -> list[dict]:
    """One request of each kind per target, before any load: a broken set-up of ours fails here; a
    third-party gateway's failure is returned (and printed), to be measured and reported as it is."""
    failures = []
    kinds = {case.request_label: case for case in cases}.values()
    for target in targets:
        for case in kinds:
            problem = _check(target, case)
            if problem is None:
                continue
            failure = {
                "target": target.name,
                "request": case.request_label,
                "answer": problem,
                "log": _first_error(target.server.log_tail(200)),
            }
            if not target.third_party:
                raise RuntimeError(f"{target.name} ({case.request_label}) {problem}\n{target.server.log_tail()}")
            print(f"warning: {target.name} ({case.request_label}) {problem}; its log: {failure['log']}", file=sys.stderr)
            failures.append(failure)
    return failures


def _check(target: Target, case: Case) -> str | None:
    """What is wrong with the target's answer to one request of ``case``; None when nothing is."""
    token, body = target.lines(case)[0]
    status, answer = h.http("POST", target.url, body, token or None, headers=target.headers)
    text = answer if isinstance(answer, str) else json.dumps(answer)
    ok = status == 200 and (
        "[DONE]" in text and 'data: {"error"' not in text if case.stream else isinstance(answer, dict) and "choices" in answer
    )
    if ok and not case.stream and body.get("conversation"):
        ok = "conversation" in answer
    return None if ok else f"answered {status}: {text[:300]}"


def _first_error(log: str) -> str:
    """The first line of a server's log that names an error: what a failed check shows of the cause."""
    return next((line.strip() for line in log.splitlines() if "error" in line.lower()), "")


def background_load(seconds: float = 2.0) -> float:
    """Cores busy while every server is idle: another job on the machine skews every figure."""
    before = h.machine_busy_seconds()
    time.sleep(seconds)
    return round((h.machine_busy_seconds() - before) / seconds, 2)


# --- measuring --------------------------------------------------------------------------------------------------


def measure(target: Target, case: Case, upstream: h.Server, duration: int, warmup: int, use_wrk: bool) -> dict:
    """One measurement of one target in one case, after a warm-up; with CPU and connection spread."""
    kind = "wrk" if use_wrk and not case.stream else "python"
    requests = target.requests_file(case)
    if warmup:
        _run_load(kind, target.url, requests, case.concurrency, warmup)

    workers = target.server.workers()
    upstream_pids = list(upstream.processes())
    server_pids = list(target.server.processes())
    database_pids = h.postgres_backends(target.dbname) if target.dbname else []  # pooled: open since start-up
    cpu_before = {pid: h.cpu_seconds(pid) for pid in {*server_pids, *upstream_pids, *database_pids}}
    machine_before, client_before, started = h.machine_busy_seconds(), h.children_cpu_seconds(), time.perf_counter()

    load = h.start_load(kind, target.url, requests, case.concurrency, duration)
    try:
        time.sleep(duration / 2)  # mid-run: every connection is open
        connections = h.established_connections(workers, target.server.port)
        result = load.result()
    finally:
        load.stop()

    wall = time.perf_counter() - started
    cpu = {pid: h.cpu_seconds(pid) - before for pid, before in cpu_before.items()}
    worker_cpu = sum(cpu[pid] for pid in workers) or 1e-9
    server_cpu = sum(cpu[pid] for pid in server_pids)
    client = h.children_cpu_seconds() - client_before
    machine = h.machine_busy_seconds() - machine_before
    return {
        "target": target.name,
        "case": case.label,
        "stream": case.stream,
        "concurrency": case.concurrency,
        "tokens": case.tokens,
        "client": kind,
        **result,
        "wall_s": round(wall, 3),
        "server_cpu_s": round(server_cpu, 3),
        "workers": [
            {
                "pid": pid,
                "cpu_s": round(cpu[pid], 3),
                "cpu_share": round(cpu[pid] / worker_cpu, 3),
                "connections": connections.get(pid, 0),
            }
            for pid in workers
        ],
        "cpu_cores": {  # CPU seconds per second of the measurement: 1.0 is one core busy
            "server": round(server_cpu / wall, 2),
            "upstream": round(sum(cpu[pid] for pid in upstream_pids) / wall, 2),
            "client": round(client / wall, 2),
            "postgres": round(sum(cpu[pid] for pid in database_pids) / wall, 2),
            # Everything else: PostgreSQL's shared processes (WAL writer, checkpointer), the kernel's
            # softirqs, this script, and whatever else runs on the machine (noise to watch for).
            "other": round(max(machine - client - sum(cpu.values()), 0) / wall, 2),
            "machine": round(machine / wall, 2),
        },
    }


def _run_load(kind: str, url: str, requests: Path, concurrency: int, duration: int) -> dict:
    load = h.start_load(kind, url, requests, concurrency, duration)
    try:
        return load.result()
    finally:
        load.stop()


def run_matrix(
    targets: list[Target], cases: list[Case], upstream: h.Server, *, rounds: int, duration: int, warmup: int, use_wrk: bool
) -> list[dict]:
    runs, total, done = [], rounds * len(cases) * len(targets), 0
    for round_index in range(rounds):
        for case_index, case in enumerate(cases):
            shift = (case_index + round_index) % len(targets)
            for target in targets[shift:] + targets[:shift]:  # a different target goes first in each case
                record = measure(target, case, upstream, duration, warmup, use_wrk)
                record["round"] = round_index
                runs.append(record)
                done += 1
                print(f"[{done}/{total}] {case.label:<26} {target.name:<16} {_progress(record)}", file=sys.stderr, flush=True)
    return runs


def _progress(record: dict) -> str:
    latency = record["latency_ms"]
    text = f"{record['rps']:9.1f} rps  p50 {fmt(latency['p50'], 3):>8} ms  p99 {fmt(latency['p99'], 3):>8} ms"
    if record["ttfc_ms"]:
        text += f"  ttfc p50 {fmt(record['ttfc_ms']['p50'], 3):>8} ms"
    if record["errors"]:
        text += f"  errors {record['errors']}"
    return text


# --- summarising ------------------------------------------------------------------------------------------------


def combine(runs: list[dict]) -> dict[tuple[str, str], dict]:
    """(case, target) -> the median over rounds of each figure (one round: that round's figures)."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        grouped.setdefault((run["case"], run["target"]), []).append(run)

    combined = {}
    for key, rows in grouped.items():
        errors: dict[str, int] = {}
        for row in rows:
            for kind, count in row["errors"].items():
                errors[kind] = errors.get(kind, 0) + count
        per_request = [row["server_cpu_s"] / row["requests"] for row in rows if row["requests"]]
        combined[key] = {
            "rps": _median(rows, "rps"),
            "p50": _median(rows, "latency_ms", "p50"),
            "p99": _median(rows, "latency_ms", "p99"),
            "ttfc_p50": _median(rows, "ttfc_ms", "p50"),
            "ttfc_p99": _median(rows, "ttfc_ms", "p99"),
            "errors": errors,
            "requests": sum(row["requests"] for row in rows),
            # The server's CPU seconds over the answers it completed in the window.
            "server_cpu_per_request_s": statistics.median(per_request) if per_request else None,
            "spread": _spread(rows),
            "cpu_cores": rows[-1]["cpu_cores"],
        }
    return combined


def _median(rows: list[dict], *path: str) -> float | None:
    values = []
    for row in rows:
        value = row
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(value)
    return statistics.median(values) if values else None


def _spread(rows: list[dict]) -> str:
    """Each worker's share of the server's CPU (and its connections), over all rounds: '52%/48% (8/8)'."""
    if len(rows[0]["workers"]) < 2:
        return ""
    shares = [
        statistics.mean(row["workers"][i]["cpu_share"] for row in rows if len(row["workers"]) > i)
        for i in range(len(rows[0]["workers"]))
    ]
    conns = [str(w["connections"]) for w in rows[-1]["workers"]]
    return "/".join(f"{share:.0%}" for share in shares) + f" ({'/'.join(conns)})"


def figure(combined: dict, case: Case, target: str, name: str) -> float | None:
    row = combined.get((case.label, target))
    return row[name] if row else None


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


# --- rendering and writing --------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


RESULTS_LEGEND = (
    "Latencies in ms (TTFC: time to the first `data:` line). `+p50`: p50 minus the direct path's in the same case. "
    "`spread`: each worker's share of the server's CPU during the measurement (connections each held, mid-run). "
    "`cores`: CPU used, in cores, by the server / the fake upstream / the load client / PostgreSQL's backends "
    "for llm-api's connections / everything else on the machine (noise, shared PostgreSQL processes)."
)


def render_checks(checks: list[tuple], summary: dict) -> list[str]:
    """The targets table: (key in the summary, text, limit, "max" or "min", unit) per check."""
    lines = ["### Targets", "", "| Check | Measured | Target | |", "| --- | ---: | ---: | --- |"]
    for key, text, limit, kind, unit in checks:
        value = summary.get(key)
        met = value is not None and (value <= limit if kind == "max" else value >= limit)
        verdict = "n/a" if value is None else ("ok" if met else "**MISSED**")
        measured = "–" if value is None else f"{value:.2f} {unit}"
        lines.append(f"| {text} | {measured} | {'≤' if kind == 'max' else '≥'} {limit:g} {unit} | {verdict} |")
    return lines


def render_results(combined: dict, cases: list[Case], targets: list[str]) -> str:
    lines = [
        "### Results",
        "",
        RESULTS_LEGEND,
        "",
        "| case | target | rps | p50 | p99 | +p50 | TTFC p50 | TTFC p99 | errors | spread | cores srv/up/cli/pg/other |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for case in cases:
        direct = combined.get((case.label, "direct"))
        for target in targets:
            row = combined.get((case.label, target))
            if row is None:
                continue
            added = "" if direct is None or target == "direct" else fmt(difference(row["p50"], direct["p50"]), 3)
            ttfc = [fmt(row["ttfc_p50"], 3), fmt(row["ttfc_p99"], 3)] if case.stream else ["", ""]
            errors = ", ".join(f"{k} {v}" for k, v in row["errors"].items()) or "0"
            cores = "/".join(str(row["cpu_cores"][k]) for k in ("server", "upstream", "client", "postgres", "other"))
            cells = [
                case.label,
                target,
                f"{row['rps']:.0f}",
                fmt(row["p50"], 3),
                fmt(row["p99"], 3),
                added,
                *ttfc,
                errors,
                row["spread"],
                cores,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_check_failures(failures: list[dict]) -> str:
    """Third-party gateways that failed a check before the load: measured anyway, their errors counted."""
    if not failures:
        return ""
    lines = ["### Failed before the load", "", "Measured anyway: their errors are in the `errors` column.", ""]
    for failure in failures:
        lines.append(
            f"- **{failure['target']}**, {failure['request']}: {failure['answer']}"
            + (f"; its log: `{failure['log']}`" if failure["log"] else "")
        )
    return "\n".join(lines)


def render_header(title: str, meta: dict, servers: str, requests: str) -> str:
    """The title and one paragraph on how the run was made: ``servers`` follows the commit, ``requests``
    the common settings; a warning when it was quick or the machine busy."""
    text = (
        f"## {title}, {meta['date']}\n\n"
        f"Commit `{meta['commit']}`{servers}, {meta['duration_s']} s per measurement after a {meta['warmup_s']} s "
        f"warm-up, {meta['rounds']} round(s) (medians), {meta['cpus']} CPUs, {requests}."
    )
    if meta["quick"]:
        text += " **Quick run: short measurements, noisy.**"
    if meta["background_cores"] > 0.2:
        text += (
            f"\n\n**The machine was not idle**: {meta['background_cores']:.2f} cores busy before the run with "
            "every server idle (see the `other` column below): absolute figures are pessimistic, ratios less so."
        )
    return text


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def write_report(output: str, report: dict, markdown: str, started: float) -> None:
    """results/<output>.json and .md, the markdown printed."""
    report["meta"]["elapsed_s"] = round(time.perf_counter() - started, 1)
    (h.RESULTS / f"{output}.json").write_text(json.dumps(report, indent=2) + "\n")
    (h.RESULTS / f"{output}.md").write_text(markdown)
    print(markdown)
    print(f"written: {h.RESULTS / (output + '.md')} and .json ({report['meta']['elapsed_s']} s)", file=sys.stderr)


# --- what every run does ----------------------------------------------------------------------------------------


def add_run_options(parser: argparse.ArgumentParser, output: str, quick_output: str) -> None:
    """The options run.py and chunks.py share."""
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each measurement (default 2)")
    parser.add_argument("--quick", action="store_true", help="2 s measurements, 1 s warm-ups: a check that it all works")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every measurement; figures are medians (default 1)")
    parser.add_argument("--dsn", default=h.DEFAULT_ADMIN_DSN, help="where to create the scratch database(s)")
    parser.add_argument("--output", help=f"results/<output>.md and .json (default {output}; {quick_output} with --quick)")
    parser.set_defaults(default_output=output, quick_output=quick_output)


def begin(args: argparse.Namespace) -> tuple[str, float]:
    """Before anything starts: SIGTERM handled as Ctrl-C is, --quick's short measurements, results/
    made. The output's name and the start time (for write_report)."""
    h.stop_on_sigterm()
    if args.quick:
        args.duration, args.warmup = min(args.duration, 2), min(args.warmup, 1)
    h.RESULTS.mkdir(parents=True, exist_ok=True)
    return args.output or (args.quick_output if args.quick else args.default_output), time.perf_counter()


def run(main) -> None:
    """``main()``, with Ctrl-C (or SIGTERM) an exit without a traceback: by then its ``finally`` blocks
    and ExitStack callbacks have stopped every server and load client and dropped the databases."""
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: everything this run started is stopped", file=sys.stderr)
        sys.exit(130)
