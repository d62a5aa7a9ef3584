#!/usr/bin/env bash
# Builds dist/lead-scorer.wasm from a clean checkout. Needs python3 (3.11+, for tomllib) with
# venv and pip, and PyPI. The toolchain goes into $VENV (default .venv here), pinned by
# requirements.txt.
set -euo pipefail
cd "$(dirname "$0")"
venv="${VENV:-.venv}"

# describe() reports src/app.py's VERSION; refuse to build a component that would disagree
# with the manifest.
python3 - <<'PY'
import ast, sys, tomllib
manifest = tomllib.load(open("nexus.toml", "rb"))["version"]
tree = ast.parse(open("src/app.py").read())
code = next((n.value.value for n in tree.body if isinstance(n, ast.Assign)
             and any(getattr(t, "id", None) == "VERSION" for t in n.targets)), None)
if code != manifest:
    sys.exit(f"src/app.py VERSION is {code!r} but nexus.toml version is {manifest!r}")
PY

[ -x "$venv/bin/componentize-py" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt

mkdir -p dist
# -p src: only the plugin's modules and the bundled standard library go in.
"$venv/bin/componentize-py" -d wit -w plugin componentize -p src app -o dist/lead-scorer.wasm
