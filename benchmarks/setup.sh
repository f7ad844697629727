#!/usr/bin/env bash
# Install what the benchmarks need beyond the package: the `benchmarks` dependency group
# (uvicorn with uvloop and httptools, gunicorn) into the current Python, and wrk, the load
# generator written in C that the HTTP intake scenario drives (Debian's package).
#
#   bash benchmarks/setup.sh            # from the repository root, with the venv active
#   PYTHON=.venv/bin/python bash benchmarks/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

"$PYTHON" -m pip install -q -e ".[all]"
"$PYTHON" - <<'PY' | xargs "$PYTHON" -m pip install -q
try:
    import tomllib
except ImportError:  # Python 3.10: pip carries the same parser
    from pip._vendor import tomli as tomllib

with open("pyproject.toml", "rb") as file:
    print("\n".join(tomllib.load(file)["dependency-groups"]["benchmarks"]))
PY

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "wrk is missing: run 'sudo apt-get install -y wrk' (Debian, Ubuntu)" >&2
        exit 1
    fi
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y wrk; }
fi
wrk --version | head -n 1 || true
