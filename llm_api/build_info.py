"""What build is running: package version, git commit and build time."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from llm_api.config import Settings

_SOURCE_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BuildInfo:
    version: str
    commit: str | None
    build_time: str | None


def build_info(settings: Settings) -> BuildInfo:
    """From the settings (set by an image build) or, in a source checkout, from git. Runs once at start-up."""
    return BuildInfo(
        version=package_version(),
        commit=settings.build_commit or _git_commit(),
        build_time=settings.build_time,
    )


def package_version() -> str:
    try:
        return version("llm-api")
    except PackageNotFoundError:  # running from a tree that was never installed
        return "0+unknown"


def _git_commit() -> str | None:
    if not (_SOURCE_ROOT / ".git").exists():
        return None
    result = subprocess.run(["git", "-C", str(_SOURCE_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or None if result.returncode == 0 else None
