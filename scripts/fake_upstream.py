"""Run a test fake provider as a standalone server, to try the service without a real model server.

    .venv/bin/python scripts/fake_upstream.py vllm --port 8001        # vLLM serving jan-v1-4b
    VLLM_BASE_URL=http://127.0.0.1:8001/v1 .venv/bin/llm-api serve

    .venv/bin/python scripts/fake_upstream.py anthropic --port 8002   # key: sk-ant-test
    ANTHROPIC_API_KEY=sk-ant-test ANTHROPIC_BASE_URL=http://127.0.0.1:8002/v1 .venv/bin/llm-api serve

Every chat completion is answered "Bonjour !" (see tests/fakes/ for what the fakes can do).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere in the checkout

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAIUpstream


async def serve(kind: str, port: int) -> None:
    fake = FakeAnthropic() if kind == "anthropic" else FakeOpenAIUpstream(flavour="openai" if kind == "openai" else "vllm")
    await fake.start(port=port)
    print(f"fake {kind} listening on {fake.base_url}/v1", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["vllm", "openai", "anthropic"])
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.kind, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
