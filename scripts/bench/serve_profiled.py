"""``llm-api serve --workers 1`` under pyinstrument, switched on and off by signals.

Started by profile_gateway.py (not meant to be run by hand). The profiler runs only between SIGUSR1
and SIGUSR2, so the report covers the load alone, not start-up or warm-up. On SIGUSR2 it writes
``$BENCH_PROFILE_OUT.txt`` (the call tree as text), ``.html`` (interactive) and ``.pyisession`` (to
re-render: ``pyinstrument --load FILE -r text --show-all``), then the process goes on serving until
SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from pyinstrument import Profiler

from llm_api.cli import main

_profiler: Profiler | None = None


def _start(*_: object) -> None:
    global _profiler
    # async_mode="disabled": sample the whole thread (the event loop and every task on it); started
    # outside any coroutine, pyinstrument's async attribution would have nothing to attach to.
    _profiler = Profiler(interval=float(os.environ.get("BENCH_PROFILE_INTERVAL", "0.0005")), async_mode="disabled")
    _profiler.start()


def _stop(*_: object) -> None:
    if _profiler is None:
        return
    session = _profiler.stop()
    out = os.environ["BENCH_PROFILE_OUT"]
    session.save(out + ".pyisession")
    _profiler.write_html(out + ".html")
    # Written last: profile_gateway.py waits for this file.
    Path(out + ".txt").write_text(_profiler.output_text(unicode=True, color=False))


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    sys.exit(main(["serve", "--workers", "1"]))
