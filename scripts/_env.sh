# Sourced by the scripts in this folder: make sure .venv exists and holds this checkout,
# installed in editable mode with its test and dev tools. Reinstalls when pyproject.toml
# changes, so a pull that adds a dependency needs no extra step.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "alarmgw needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  echo "creating $venv" >&2
  "$python" -m venv "$venv"
fi
stamp="$venv/.alarmgw-installed"
want=$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing alarmgw and its tools into $venv (log: $venv/install.log)" >&2
  if ! { "$venv/bin/python" -m pip install --disable-pip-version-check --upgrade pip \
         && "$venv/bin/python" -m pip install --disable-pip-version-check -e "$root[dev]"; } > "$venv/install.log" 2>&1; then
    tail -30 "$venv/install.log" >&2
    echo "installation failed; the whole log is in $venv/install.log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
cd "$root"
