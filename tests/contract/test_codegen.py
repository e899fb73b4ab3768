"""``python -m codegen``: the committed output is up to date, staleness is caught, generation is deterministic.

The staleness and determinism tests work on a copy of the generator, its configuration, the spec and
the generated package (codegen resolves its ROOT from its own location, so the copy is a project of
its own) and never touch the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("llm_api/schemas/models.py", "llm_api/schemas/operations.py")


def codegen(cwd: Path, *args: str, seed: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if seed is not None:
        env["PYTHONHASHSEED"] = seed  # inherited by the datamodel-codegen subprocess as well
    return subprocess.run(
        [sys.executable, "-m", "codegen", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def copy_project(tmp: Path) -> Path:
    """codegen/, pyproject.toml, openapi.yaml and llm_api/schemas/ in the same layout, under tmp."""
    project = tmp / "project"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "codegen", project / "codegen", ignore=ignore)
    shutil.copytree(ROOT / "llm_api" / "schemas", project / "llm_api" / "schemas", ignore=ignore)
    for name in ("pyproject.toml", "openapi.yaml"):
        shutil.copy2(ROOT / name, project / name)
    # The copy is faithful: the committed output is up to date there too.
    result = codegen(project, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    return project


def snapshot(project: Path) -> dict[str, bytes]:
    return {name: (project / name).read_bytes() for name in GENERATED}


def edit_spec(project: Path, old: str, new: str, *, after: str) -> None:
    """Replace the first ``old`` that follows ``after`` in the copied openapi.yaml."""
    path = project / "openapi.yaml"
    text = path.read_text(encoding="utf-8")
    anchor = text.index(after)
    at = text.index(old, anchor)
    path.write_text(text[:at] + new + text[at + len(old) :], encoding="utf-8")


def changed_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_committed_output_is_up_to_date():
    result = codegen(ROOT, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "generated files are up to date" in result.stdout
    assert result.stderr == ""


def test_a_changed_constraint_makes_the_models_stale(tmp_path):
    project = copy_project(tmp_path)
    checkout_before = snapshot(ROOT)
    edit_spec(project, "maxLength: 120", "maxLength: 121", after="\n    ProjectName:\n")

    stale = codegen(project, "--check")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "--- a/llm_api/schemas/models.py" in stale.stdout
    assert "+++ b/llm_api/schemas/models.py" in stale.stdout
    assert "operations.py" not in stale.stdout  # the operation table does not depend on it
    # ProjectName is used by two models; exactly their constraint changes, nothing else.
    assert sorted(changed_lines(stale.stdout)) == sorted(["-            max_length=120,", "+            max_length=121,"] * 2), (
        stale.stdout
    )
    assert "stale generated files: llm_api/schemas/models.py; run `python -m codegen`" in stale.stderr

    written = codegen(project)
    assert written.returncode == 0, written.stdout + written.stderr
    assert written.stdout.splitlines() == ["wrote llm_api/schemas/models.py"]
    assert (project / "llm_api/schemas/models.py").read_text(encoding="utf-8").count("max_length=121,") == 2

    fresh = codegen(project, "--check")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "generated files are up to date" in fresh.stdout
    assert snapshot(ROOT) == checkout_before  # the copy regenerated itself, not the checkout


def test_a_new_property_makes_the_models_stale(tmp_path):
    project = copy_project(tmp_path)
    edit_spec(
        project,
        "        is_favorite: {type: boolean, default: false}\n",
        "        is_favorite: {type: boolean, default: false}\n        color: {type: string, maxLength: 7}\n",
        after="\n    ProjectCreateRequest:\n",
    )
    stale = codegen(project, "--check")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    added = [line for line in changed_lines(stale.stdout) if line.startswith("+")]
    assert "+    color: Annotated[str | MISSING, Field(max_length=7)] = MISSING" in added, stale.stdout
    assert not [line for line in changed_lines(stale.stdout) if line.startswith("-")], stale.stdout

    assert codegen(project).returncode == 0
    assert codegen(project, "--check").returncode == 0


def test_a_changed_operation_makes_the_operation_table_stale(tmp_path):
    project = copy_project(tmp_path)
    # getMetrics gains an x-planned mark: the table must now say it is planned.
    edit_spec(
        project,
        "      x-rate-limited: false\n",
        "      x-rate-limited: false\n      x-planned: true\n",
        after="operationId: getMetrics\n",
    )
    stale = codegen(project, "--check")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "--- a/llm_api/schemas/operations.py" in stale.stdout
    assert "stale generated files: llm_api/schemas/operations.py;" in stale.stderr

    assert codegen(project).returncode == 0
    assert codegen(project, "--check").returncode == 0


def test_generation_is_deterministic_across_hash_seeds(tmp_path):
    project = copy_project(tmp_path)
    committed = snapshot(project)
    runs = {}
    for seed in ("0", "1", "3054961185"):
        for name in GENERATED:
            (project / name).unlink()  # so that every run writes both files from scratch
        result = codegen(project, seed=seed)
        assert result.returncode == 0, result.stdout + result.stderr
        assert sorted(result.stdout.splitlines()) == sorted(f"wrote {name}" for name in GENERATED)
        runs[seed] = snapshot(project)
    assert runs["0"] == runs["1"] == runs["3054961185"]
    assert runs["0"] == committed
