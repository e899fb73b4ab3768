"""``python -m codegen [--check]``: regenerate (or verify) the models and operation table."""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from codegen import render, spec

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi.yaml"
MODELS = ROOT / "llm_api" / "schemas" / "models.py"
OPERATIONS = ROOT / "llm_api" / "schemas" / "operations.py"


def generate() -> dict[Path, str]:
    """The generated files and their exact contents."""
    document = spec.load(SPEC)
    ops = spec.operations(document)
    return {
        MODELS: _models_source(spec.with_parameter_schemas(document, ops)),
        OPERATIONS: render.operations_module(ops),
    }


def _models_source(document: dict) -> str:
    # datamodel-codegen reads its flags from [tool.datamodel-codegen] in pyproject.toml (cwd=ROOT);
    # only the input and output paths are given here.
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "openapi.yaml", Path(tmp) / "models.py"
        source.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-m", "datamodel_code_generator", "--input", str(source), "--output", str(target)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"datamodel-codegen failed:\n{result.stderr}")
        return target.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codegen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files are stale")
    args = parser.parse_args(argv)
    try:
        files = generate()
    except spec.SpecError as error:
        print(f"openapi.yaml: {error}", file=sys.stderr)
        return 2
    stale = [path for path, text in files.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            old = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
            rel = path.relative_to(ROOT)
            sys.stdout.writelines(difflib.unified_diff(old, files[path].splitlines(keepends=True), f"a/{rel}", f"b/{rel}", n=2))
        if stale:
            print(
                f"\nstale generated files: {', '.join(str(p.relative_to(ROOT)) for p in stale)}; run `python -m codegen`",
                file=sys.stderr,
            )
            return 1
        print("generated files are up to date")
        return 0
    for path in stale:
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    if not stale:
        print("generated files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
