"""Dead code in llm_api/, codegen/, scripts/ and tests/, found by vulture (run by .ci/run).

    .venv/bin/python scripts/dead_code.py

What vulture cannot see being used is left out of its report here, and nothing else:
- the API handlers: routing binds them by their operation's name (``api.handlers()``), and refuses
  to start when a handler matches no operation, so none of them can be dead;
- what a framework calls by name, listed with the reason in scripts/vulture_allowlist.py.
The generated schemas are not searched (codegen decides what they hold).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_api.schemas.operations import OPERATIONS  # noqa: E402 (after the path is set)


def main() -> int:
    handlers = ",".join(sorted(operation.handler_name for operation in OPERATIONS.values()))
    return subprocess.call(
        [
            sys.executable,
            "-m",
            "vulture",
            "llm_api",
            "codegen",
            "scripts",
            "tests",
            "scripts/vulture_allowlist.py",
            "--min-confidence",
            "60",
            "--ignore-names",
            handlers,
            "--exclude",
            "llm_api/schemas/models.py,llm_api/schemas/operations.py",
        ],
        cwd=ROOT,
    )


if __name__ == "__main__":
    sys.exit(main())
