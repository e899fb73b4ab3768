"""What llm-api spends on each chunk of a stream it relays, and what a stream costs beyond a plain answer.

    .venv/bin/python scripts/bench/chunks.py [--quick] [--baseline /work/before/.venv/bin/llm-api]
        [--duration 10] [--warmup 2] [--rounds 1] [--chunks 20 200] [--chunk-interval 0]

In one invocation it starts the fake upstream (scripts/bench/fake_upstream.py, ``--chunks`` the
larger length: a request's ``max_tokens`` picks how many content chunks it answers), a fresh
database and ``llm-api serve --workers 1`` on it -- one worker, so that the server's CPU time is
one process's and its rate at saturation is one worker's -- and, with ``--baseline``, an older
build of llm-api beside it on a database of its own (its own migrations), then measures every
target in every case, the targets taking turns as in run.py:

    targets   direct (the fake itself: the floor), llm-api, llm-api@<commit> (``--baseline``)
    cases     non-streamed c=1 with the short length's words (the plain answer);
              streamed c=1 and c=16, short and long (default 20 and 200 content chunks)

All with loadgen.py, plain answers too, so that a stream and a plain answer are timed by the same
client. From the measurements of each target, ``S`` and ``L`` chunks (defaults 20 and 200):

    CPU per chunk     (server CPU s per stream at L − at S) / (L − S), at c=1 and c=16: the server
                      process's CPU time during the measurement (from /proc) over the streams it
                      completed, so independent of what else shares the cores
    wall per chunk    (1/rps at L − 1/rps at S) / (L − S) at c=16, where the one worker is saturated
    p50 per chunk     (p50 at L − p50 at S) / (L − S) at c=1
    fixed cost        p50 of the S-chunk stream at c=1 − p50 of the plain answer at c=1 (goal ≤ 1 ms)

and, with a baseline, each figure's ratio llm-api / llm-api@<commit>. For ``direct`` the CPU is the
fake's and the wall figures the load client's: they show the floor and the client's headroom.

``--baseline PATH`` is another build's ``llm-api`` executable, e.g. a worktree of an older commit
with its own virtualenv:

    git worktree add /work/before f8df4ba
    python3 -m venv /work/before/.venv && /work/before/.venv/bin/pip install -e /work/before
    .venv/bin/python scripts/bench/chunks.py --baseline /work/before/.venv/bin/llm-api

It is labelled ``llm-api@<commit>`` from the checkout its package is imported from
(``--baseline-label`` names it otherwise). ``--chunk-interval S`` makes the fake pace its events (one
write per chunk, as a model generating tokens does, instead of the whole stream in one write): the
CPU figures then include a read per chunk; wall and latency figures are the pacing's.

Writes results/<output>.json (every measurement) and .md (the tables), and prints the markdown;
``--output`` defaults to ``chunks`` (``chunks-quick`` with --quick). Everything it started is stopped
when it ends, fails, or is interrupted (Ctrl-C, SIGTERM). Read the differences and ratios, not the
absolute figures: docs/performance.md says why.
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

SATURATED = 16  # connections that keep one worker busy: its rate then is its cost per stream

# What each per-target figure is, for the tables: (key, heading, digits).
FIGURES = [
    ("cpu_us_per_chunk_c1", "CPU µs/chunk c=1", 1),
    ("cpu_us_per_chunk_saturated", f"CPU µs/chunk c={SATURATED}", 1),
    ("wall_us_per_chunk_saturated", f"wall µs/chunk c={SATURATED}", 1),
    ("p50_us_per_chunk_c1", "p50 µs/chunk c=1", 1),
    ("cpu_ms_per_short_stream", f"CPU ms/stream c={SATURATED}, short", 3),
    ("cpu_ms_per_long_stream", f"CPU ms/stream c={SATURATED}, long", 3),
    ("stream_fixed_cost_ms", "stream − plain p50 c=1 (ms)", 3),
]


def build_cases(short: int, long: int) -> list[Case]:
    return [Case(False, 1, short), *(Case(True, c, n) for c in (1, SATURATED) for n in (short, long))]


# --- setting up -------------------------------------------------------------------------------------------------


def start_llm_api(
    stack: ExitStack, args: argparse.Namespace, upstream: h.Server, name: str, executable: Path | None = None
) -> Target:
    """One worker of an llm-api build on a database of its own (an older build may not know a newer
    one's migrations), a guest logged in; stopped, and its database dropped, with ``stack``."""
    dsn = stack.enter_context(h.fresh_database(args.dsn))
    env = h.gateway_env(port=h.free_port(), dsn=dsn, secret="bench-" + "k" * 40, upstream_port=upstream.port)
    server = h.start_gateway(env, 1, name=name, executable=executable)
    stack.callback(server.stop)  # before the database is dropped (the stack unwinds in reverse)
    base = f"http://127.0.0.1:{server.port}"
    token, _ = h.login_guests(base, 1)[0]
    h.wait_model_listed(base, token, server)
    return Target(name, url_of(server), server, h.GATEWAY_MODEL, [(token, None)], dbname=re.search(r"dbname=(\S+)", dsn).group(1))


def start_targets(stack: ExitStack, args: argparse.Namespace, upstream: h.Server) -> list[Target]:
    targets = [
        Target("direct", url_of(upstream), upstream, h.UPSTREAM_MODEL, [("", None)]),
        start_llm_api(stack, args, upstream, "llm-api"),
    ]
    if args.baseline:
        label = args.baseline_label or h.build_label(args.baseline)
        print(f"baseline: {label} ({args.baseline})", file=sys.stderr, flush=True)
        targets.append(start_llm_api(stack, args, upstream, label, args.baseline))
    return targets


# --- summarising ------------------------------------------------------------------------------------------------


def per_chunk(combined: dict, target: str, short: int, long: int) -> dict:
    """The figures of one target: what a chunk adds (the long stream's cost minus the short one's, over
    the chunks between them), what a short stream costs, and the stream's fixed cost."""
    span = long - short

    def of(stream: bool, concurrency: int, tokens: int, name: str) -> float | None:
        return figure(combined, Case(stream, concurrency, tokens), target, name)

    def per_chunk_us(name: str, concurrency: int, scale: float, transform=lambda v: v) -> float | None:
        at_short, at_long = of(True, concurrency, short, name), of(True, concurrency, long, name)
        if not at_short or not at_long:  # not measured, or no answer completed (a rate of 0 has no inverse)
            return None
        return (transform(at_long) - transform(at_short)) / span * scale

    def cpu_ms(tokens: int) -> float | None:
        seconds = of(True, SATURATED, tokens, "server_cpu_per_request_s")
        return None if seconds is None else seconds * 1000

    return {
        "cpu_us_per_chunk_c1": per_chunk_us("server_cpu_per_request_s", 1, 1e6),
        "cpu_us_per_chunk_saturated": per_chunk_us("server_cpu_per_request_s", SATURATED, 1e6),
        "wall_us_per_chunk_saturated": per_chunk_us("rps", SATURATED, 1e6, lambda rps: 1 / rps),
        "p50_us_per_chunk_c1": per_chunk_us("p50", 1, 1e3),  # p50 is in ms
        "cpu_ms_per_short_stream": cpu_ms(short),
        "cpu_ms_per_long_stream": cpu_ms(long),
        "stream_fixed_cost_ms": difference(of(True, 1, short, "p50"), of(False, 1, short, "p50")),
    }


def summarise(combined: dict, targets: list[str], cases: list[Case], short: int, long: int) -> dict:
    figures = {target: per_chunk(combined, target, short, long) for target in targets}
    headroom = [ratio(figure(combined, case, "direct", "rps"), figure(combined, case, "llm-api", "rps")) for case in cases]
    return {
        "per_target": figures,
        # The llm-api figures the checks read.
        "stream_fixed_cost_ms": figures["llm-api"]["stream_fixed_cost_ms"],
        "client_headroom_min": min((x for x in headroom if x is not None), default=None),
    }


def baseline_ratios(figures: dict, current: str, baseline: str) -> dict[str, float | None]:
    """Each figure of the current build over the baseline's (below 1: the current one spends less)."""
    return {key: ratio(figures[current][key], figures[baseline][key]) for key, _, _ in FIGURES}


# --- rendering --------------------------------------------------------------------------------------------------


def render(report: dict, cases: list[Case]) -> str:
    meta, summary = report["meta"], report["summary"]
    checks = [
        (
            "stream_fixed_cost_ms",
            f"fixed cost of a stream, c=1, p50 ({meta['chunks'][0]}-chunk stream − plain answer, llm-api)",
            1.0,
            "max",
            "ms",
        )
    ]
    sections = [
        _render_header(meta),
        "\n".join(matrix.render_checks(checks, summary)),
        _render_per_chunk(report),
        matrix.render_check_failures(report["check_failures"]),
        matrix.render_results(report["combined"], cases, report["targets"]),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _render_header(meta: dict) -> str:
    short, long = meta["chunks"]
    against = f" against `{meta['baseline']['label']}`" if meta["baseline"] else ""
    return matrix.render_header(
        "Per-chunk streaming benchmark",
        meta,
        f"{against}, one llm-api worker",
        f"streams of {short} and {long} content chunks{_pacing(meta['chunk_interval_s'])}, every case measured with loadgen.py",
    )


def _pacing(interval: float) -> str:
    return (
        f" paced {interval * 1000:g} ms apart (wall and p50 figures are the pacing's)"
        if interval
        else " sent by the fake in one write"
    )


def _render_per_chunk(report: dict) -> str:
    meta, summary = report["meta"], report["summary"]
    lines = [
        "### Per relayed chunk",
        "",
        _per_chunk_legend(*meta["chunks"]),
        "",
        _row(["target", *(heading for _, heading, _ in FIGURES)]),
        "| --- |" + " ---: |" * len(FIGURES),
    ]
    for target, figures in summary["per_target"].items():
        lines.append(_row([target, *(fmt(figures[key], digits) for key, _, digits in FIGURES)]))
    if meta["baseline"]:
        ratios = report["baseline_ratios"]
        lines.append(
            _row(
                [
                    f"llm-api / {meta['baseline']['label']}",
                    *("–" if ratios[key] is None else f"{ratios[key]:.2f}×" for key, _, _ in FIGURES),
                ]
            )
        )
    headroom = fmt(summary["client_headroom_min"], 1)
    lines += ["", f"The direct path ran at least {headroom}× llm-api's rate in every case (the client's headroom)."]
    return "\n".join(lines)


def _per_chunk_legend(short: int, long: int) -> str:
    return (
        f"Per chunk: (figure of a {long}-chunk stream − of a {short}-chunk one) / {long - short}. CPU: the "
        "server process's CPU time over the streams it completed (for `direct`, the fake's). Wall: "
        f"1/rps at c={SATURATED}, one worker saturated (for `direct`, the load client's limit). "
        f"`stream − plain`: p50 of the {short}-chunk stream minus p50 of the plain answer of {short} words, "
        "at c=1. With a baseline, the last row: the current build's figure over the baseline's (below 1: it spends less)."
    )


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# --- the command ------------------------------------------------------------------------------------------------


def main() -> None:
    args = _parser().parse_args()
    output, started = matrix.begin(args)
    short, long = sorted(args.chunks)
    if args.baseline and not args.baseline.exists():
        raise SystemExit(f"--baseline {args.baseline}: no such executable")
    cases = build_cases(short, long)

    with ExitStack() as stack:
        upstream = h.start_fake_upstream(h.free_port(), chunks=long, chunk_interval=args.chunk_interval)
        stack.callback(upstream.stop)
        targets = start_targets(stack, args, upstream)
        check_failures = matrix.check_targets(targets, cases)
        background = matrix.background_load()
        runs = matrix.run_matrix(
            targets, cases, upstream, rounds=args.rounds, duration=args.duration, warmup=args.warmup, use_wrk=False
        )

    combined = matrix.combine(runs)
    names = [t.name for t in targets]
    summary = summarise(combined, names, cases, short, long)
    baseline = {"label": names[2], "executable": str(args.baseline)} if args.baseline else None
    report = {
        "meta": {
            "date": matrix.now(),
            "commit": h.git_commit(h.ROOT),
            "baseline": baseline,
            "workers": 1,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "chunks": [short, long],
            "chunk_interval_s": args.chunk_interval,
            "saturated_concurrency": SATURATED,
            "quick": args.quick,
            "cpus": matrix.cpus(),
            "python": platform.python_version(),
            "background_cores": background,
        },
        "targets": names,
        "summary": summary,
        "baseline_ratios": baseline_ratios(summary["per_target"], "llm-api", names[2]) if baseline else None,
        "check_failures": check_failures,
        "combined": {f"{case} | {target}": row for (case, target), row in combined.items()},
        "runs": runs,
    }
    matrix.write_report(output, report, render({**report, "combined": combined}, cases), started)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    matrix.add_run_options(parser, "chunks", "chunks-quick")
    parser.add_argument(
        "--chunks",
        type=int,
        nargs=2,
        default=[20, 200],
        metavar=("SHORT", "LONG"),
        help="content chunks of the short and the long stream (default 20 200)",
    )
    parser.add_argument(
        "--chunk-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the fake's pause between a stream's events (default 0: the whole stream in one write)",
    )
    parser.add_argument(
        "--baseline", type=Path, metavar="LLM_API", help="another build's `llm-api` executable, measured as a third target"
    )
    parser.add_argument("--baseline-label", help="its name in the tables (default llm-api@<its checkout's commit>)")
    return parser


if __name__ == "__main__":
    matrix.run(main)
