#!/usr/bin/env bash
# Creates .venv (if missing) and installs the pinned requirements into it. Quiet when current.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
req=${1:-dev}
cd "$here"
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.installed-$req
if [ ! -f "$stamp" ] || [ -n "$(find requirements -newer "$stamp" -name '*.txt')" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r "requirements/$req.txt" >&2
  touch "$stamp"
fi
