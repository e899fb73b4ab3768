"""The gateway benchmark: llm-api against the same upstream called directly, and against LiteLLM
proxy and Portkey's gateway.

    .venv/bin/python scripts/bench/run.py [--duration 10] [--workers 2] [--quick] [--rounds 1] [--principals 1]

What it does, in one invocation:
    1. starts fake_upstream.py (canned answers, microseconds each) on a free port;
    2. creates a fresh database, starts ``llm-api serve --workers N`` on it (the default settings but an
       external DSN, the fake as ``VLLM_BASE_URL``, ``LOG_LEVEL=warning`` and a rate limit that is on
       but never reached), stops it and starts it again: start-to-healthy is timed for both starts
       (the first one applies the migrations);
    3. logs in ``--principals`` guests and creates one conversation each (for the persistence cases);
    4. starts LiteLLM proxy 1.108 with as many workers when its separate virtualenv exists
       (``--litellm``, default /work/bench-venvs/litellm/bin/litellm; ``--no-litellm`` skips it), and
       Portkey's gateway (one Node process: it has no workers) when npm installed it (``--portkey``,
       default /work/bench-node/node_modules/.bin/gateway; ``--no-portkey`` skips it). Portkey has no
       configuration here: every request carries ``x-portkey-provider: openai`` and
       ``x-portkey-custom-host`` (the fake). A third-party gateway that fails the check before the
       load is measured anyway and the failure reported (Portkey 1.15's streams answer 500 on Node 20);
    5. runs every case -- non-streamed at c=1, 16, 64 and streamed (20 chunks) at c=1, 16 -- against
       each target: ``direct`` (the fake itself), ``llm-api``, ``llm-api+conv`` (the same with
       ``"conversation": id``, so the exchange is stored), ``litellm`` and ``portkey``. Targets take turns within a
       case, starting with a different one in each case, so that machine noise hits all alike. Every
       measurement follows a warm-up at the same concurrency. Non-streamed cases use wrk
       (wrk_chat.lua), streamed ones loadgen.py, which also times the first chunk;
    6. reads, while each measurement runs, the connections each worker holds, and around it each
       process's CPU time: how the load spread over the workers, and what the upstream, the client
       and the whole machine used; after the run, each worker's RSS and PSS;
    7. writes results/<output>.json (everything) and results/<output>.md (the tables, the targets
       checked), and prints the markdown. ``--output`` defaults to ``latest`` (``quick`` with --quick).

Read the ratios, not the absolute times: everything (clients, servers, PostgreSQL) shares the
machine's cores. docs/performance.md says what each figure means. scripts/bench/chunks.py measures
what a relayed stream chunk costs.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h
import matrix
from matrix import Case, Target, difference, figure, fmt, ratio, url_of

CASES = [Case(False, 1), Case(False, 16), Case(False, 64), Case(True, 1), Case(True, 16)]
NON_STREAMED_C1, NON_STREAMED_C64, STREAMED_C1 = Case(False, 1), Case(False, 64), Case(True, 1)

# The targets, checked on every run: (key in the summary, text, limit, "max" or "min", unit).
TARGETS = [
    ("added_p50_ms", "added latency, non-streamed c=1, p50 (llm-api − direct)", 1.0, "max", "ms"),
    ("added_ttfc_ms", "added time to first chunk, streamed c=1, p50 (llm-api − direct)", 2.0, "max", "ms"),
    ("rps_vs_litellm_c64", "throughput non-streamed c=64, llm-api / LiteLLM", 15.0, "min", "×"),
    ("persistence_delta_ms", "persistence cost, non-streamed c=1, p50 (llm-api+conv − llm-api)", 2.0, "max", "ms"),
    ("rss_max_mb", "RSS per llm-api worker after the run (largest)", 100.0, "max", "MB"),
    ("start_to_healthy_s", "start to healthy, external database (restart)", 2.0, "max", "s"),
]


# --- setting up -------------------------------------------------------------------------------------------------


def start_gateway_twice(env: dict[str, str], workers: int) -> tuple[h.Server, dict]:
    """Start llm-api on the fresh database (migrations run), stop it, start it again; time both."""
    first = h.start_gateway(env, workers, name="llm-api-first-start")
    fresh = first.healthy_after
    first.stop()
    gateway = h.start_gateway(env, workers)
    return gateway, {"llm-api (fresh database, migrations)": fresh, "llm-api (restart)": gateway.healthy_after}


def build_targets(
    upstream: h.Server, gateway: h.Server, others: dict[str, h.Server], principals: list[tuple[str, str]], dbname: str
) -> list[Target]:
    """direct, llm-api, llm-api+conv, then the third-party gateways started (``others``, by name)."""
    tokens = [token for token, _ in principals]
    targets = [
        Target("direct", url_of(upstream), upstream, h.UPSTREAM_MODEL, [("", None)]),
        Target("llm-api", url_of(gateway), gateway, h.GATEWAY_MODEL, [(t, None) for t in tokens], dbname=dbname),
        Target("llm-api+conv", url_of(gateway), gateway, h.GATEWAY_MODEL, principals, dbname=dbname),
    ]
    if "litellm" in others:
        targets.append(
            Target(
                "litellm",
                url_of(others["litellm"]),
                others["litellm"],
                h.UPSTREAM_MODEL,
                [(h.LITELLM_KEY, None)],
                third_party=True,
            )
        )
    if "portkey" in others:
        # The bearer is passed on to the fake, which ignores it.
        targets.append(
            Target(
                "portkey",
                url_of(others["portkey"]),
                others["portkey"],
                h.UPSTREAM_MODEL,
                [("sk-fake-upstream", None)],
                headers=h.portkey_headers(upstream.port),
                third_party=True,
            )
        )
    return targets


def start_third_parties(stack: ExitStack, args: argparse.Namespace, upstream: h.Server, startup: dict) -> dict[str, h.Server]:
    """LiteLLM proxy and Portkey's gateway, each when installed and not switched off; stopped with ``stack``."""
    wanted = {
        "litellm": (
            args.litellm,
            args.no_litellm,
            lambda: h.start_litellm(args.litellm, h.free_port(), upstream.port, args.workers),
        ),
        "portkey": (args.portkey, args.no_portkey, lambda: h.start_portkey(args.portkey, h.free_port())),
    }
    started = {}
    for name, (path, skipped, start) in wanted.items():
        if skipped or not path.exists():
            print(f"{name} not run ({f'--no-{name}' if skipped else f'{path} not found'})", file=sys.stderr)
            continue
        print(f"starting {name} ({path}) ...", file=sys.stderr, flush=True)
        server = start()
        stack.callback(server.stop)
        started[name] = server
        startup[name] = server.healthy_after
    return started


# --- summarising ------------------------------------------------------------------------------------------------


def summarise(combined: dict, memory: dict, startup: dict) -> dict:
    def of(case: Case, target: str, name: str) -> float | None:
        return figure(combined, case, target, name)

    workers = [p for p in memory.get("llm-api", []) if p["role"] == "worker"]
    headroom = [ratio(of(case, "direct", "rps"), of(case, "llm-api", "rps")) for case in CASES]
    return {
        "added_p50_ms": difference(of(NON_STREAMED_C1, "llm-api", "p50"), of(NON_STREAMED_C1, "direct", "p50")),
        "added_ttfc_ms": difference(of(STREAMED_C1, "llm-api", "ttfc_p50"), of(STREAMED_C1, "direct", "ttfc_p50")),
        "rps_vs_litellm_c64": ratio(of(NON_STREAMED_C64, "llm-api", "rps"), of(NON_STREAMED_C64, "litellm", "rps")),
        "rps_vs_portkey_c64": ratio(of(NON_STREAMED_C64, "llm-api", "rps"), of(NON_STREAMED_C64, "portkey", "rps")),
        "persistence_delta_ms": difference(of(NON_STREAMED_C1, "llm-api+conv", "p50"), of(NON_STREAMED_C1, "llm-api", "p50")),
        "rss_max_mb": max((p["rss_mb"] for p in workers), default=None),
        "pss_max_mb": max((p["pss_mb"] for p in workers if p["pss_mb"] is not None), default=None),
        "start_to_healthy_s": startup.get("llm-api (restart)"),
        "start_to_healthy_fresh_s": startup.get("llm-api (fresh database, migrations)"),
        # How much faster the direct path ran than llm-api, per case: the clients had at least this headroom.
        "client_headroom_min": min((x for x in headroom if x is not None), default=None),
    }


def memory_report(servers: list[h.Server]) -> dict[str, list[dict]]:
    return {
        server.name: [{"pid": pid, "role": role, **h.memory_mb(pid)} for pid, role in server.processes().items()]
        for server in servers
    }


# --- rendering --------------------------------------------------------------------------------------------------


def render(report: dict) -> str:
    sections = [
        _render_header(report["meta"]),
        _render_targets(report["summary"]),
        matrix.render_check_failures(report["check_failures"]),
        matrix.render_results(report["combined"], CASES, report["targets"]),
        _render_memory(report),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _render_header(meta: dict) -> str:
    servers = f", {meta['workers']} worker(s) for llm-api and LiteLLM" + (
        " (Portkey: one Node process)" if meta["portkey"] else ""
    )
    return matrix.render_header(
        "Gateway benchmark", meta, servers, f"{meta['principals']} principal(s), {meta['chunks']} chunks per stream"
    )


def _render_targets(summary: dict) -> str:
    lines = matrix.render_checks(TARGETS, summary)
    portkey = summary.get("rps_vs_portkey_c64")
    lines += [
        "",
        (
            f"Other figures: first start on a fresh database (migrations) "
            f"{fmt(summary['start_to_healthy_fresh_s'])} s; largest PSS of a worker "
            f"{fmt(summary['pss_max_mb'], 1)} MB; "
            + (f"throughput non-streamed c=64, llm-api / Portkey {fmt(portkey)}×; " if portkey else "")
            + f"the direct path ran at least {fmt(summary['client_headroom_min'], 1)}× llm-api's rate "
            "in every case (the clients' headroom)."
        ),
    ]
    return "\n".join(lines)


def _render_memory(report: dict) -> str:
    lines = [
        "### Memory after the run and start-up",
        "",
        "| server | pid | role | RSS MB | PSS MB |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for server, processes in report["memory"].items():
        for proc in processes:
            lines.append(f"| {server} | {proc['pid']} | {proc['role']} | {fmt(proc['rss_mb'], 1)} | {fmt(proc['pss_mb'], 1)} |")
    lines += ["", "| server | start → healthy (s) |", "| --- | ---: |"]
    lines += [f"| {name} | {fmt(seconds)} |" for name, seconds in report["startup"].items()]
    return "\n".join(lines)


# --- the command ------------------------------------------------------------------------------------------------


def main() -> None:
    args = _parser().parse_args()
    output, started = matrix.begin(args)

    with ExitStack() as stack:
        upstream = h.start_fake_upstream(h.free_port(), args.upstream_workers, args.chunks)
        stack.callback(upstream.stop)
        dsn = stack.enter_context(h.fresh_database(args.dsn))
        dbname = re.search(r"dbname=(\S+)", dsn).group(1)
        env = h.gateway_env(port=h.free_port(), dsn=dsn, secret="bench-" + "k" * 40, upstream_port=upstream.port)
        gateway, startup = start_gateway_twice(env, args.workers)
        stack.callback(gateway.stop)  # before the database is dropped (the stack unwinds in reverse)
        base = f"http://127.0.0.1:{gateway.port}"
        principals = h.login_guests(base, args.principals)
        startup["llm-api (restart): model listed"] = h.wait_model_listed(base, principals[0][0], gateway)
        others = start_third_parties(stack, args, upstream, startup)

        targets = build_targets(upstream, gateway, others, principals, dbname)
        check_failures = matrix.check_targets(targets, CASES)
        background = matrix.background_load()
        runs = matrix.run_matrix(
            targets,
            CASES,
            upstream,
            rounds=args.rounds,
            duration=args.duration,
            warmup=args.warmup,
            use_wrk=h.wrk_available() and not args.python_client,
        )
        memory = memory_report([gateway, *others.values(), upstream])

    combined = matrix.combine(runs)
    report = {
        "meta": {
            "date": matrix.now(),
            "commit": h.git_commit(h.ROOT),
            "workers": args.workers,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "principals": args.principals,
            "chunks": args.chunks,
            "quick": args.quick,
            "cpus": matrix.cpus(),
            "python": platform.python_version(),
            "background_cores": background,
            "litellm": str(args.litellm) if "litellm" in others else None,
            "portkey": str(args.portkey) if "portkey" in others else None,
        },
        "targets": [t.name for t in targets],
        "summary": summarise(combined, memory, startup),
        "check_failures": check_failures,
        "startup": startup,
        "memory": memory,
        "combined": {f"{case} | {target}": row for (case, target), row in combined.items()},
        "runs": runs,
    }
    matrix.write_report(output, report, render({**report, "combined": combined}), started)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    matrix.add_run_options(parser, "latest", "quick")
    parser.add_argument("--workers", type=int, default=2, help="workers of llm-api and of LiteLLM (default 2)")
    parser.add_argument(
        "--principals", type=int, default=1, help="guests (each with a conversation) the requests rotate over (default 1)"
    )
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per streamed answer (default 20)")
    parser.add_argument("--upstream-workers", type=int, default=1, help="processes of the fake upstream (default 1)")
    parser.add_argument("--litellm", type=Path, default=h.DEFAULT_LITELLM, help="LiteLLM proxy's `litellm` executable")
    parser.add_argument("--no-litellm", action="store_true", help="do not run LiteLLM proxy")
    parser.add_argument(
        "--portkey",
        type=Path,
        default=h.DEFAULT_PORTKEY,
        help="Portkey's gateway: the `gateway` executable npm installs (default %(default)s)",
    )
    parser.add_argument("--no-portkey", action="store_true", help="do not run Portkey's gateway")
    parser.add_argument("--python-client", action="store_true", help="use loadgen.py for non-streamed cases too")
    return parser


if __name__ == "__main__":
    matrix.run(main)
