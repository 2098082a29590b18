#!/usr/bin/env bash
# Installs everything nlumon needs on a fresh Debian machine, and does nothing that is already done:
#   - system packages: Java 17 + Maven (for the Kafka broker), Debian's clickhouse-server, chromium (report test);
#   - the virtualenv .venv with nlumon and its pinned dependencies (constraints.txt).
# Kafka's jars are fetched by `nlumon services up` (Maven, cached in ~/.m2).
# Usage: scripts/bootstrap.sh [--relock]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1;34m[bootstrap]\033[0m %s\n' "$*" >&2; }

# --- system packages ---------------------------------------------------------------------------
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v clickhouse-server >/dev/null || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null || need+=(clickhouse-client)
command -v chromium >/dev/null || need+=(chromium)  # renders the HTML report in tests/e2e
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  log "installing system packages: ${need[*]}"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# --- python virtualenv ----------------------------------------------------------------------------
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp=.venv/.nlumon-install
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "${1:-}" = "--relock" ] || [ ! -x .venv/bin/python ] || [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
  [ -x .venv/bin/python ] || { log "creating .venv with $($PY --version)"; "$PY" -m venv .venv; }
  log "installing nlumon and its dependencies into .venv (torch is large: the first time takes minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  if [ "${1:-}" = "--relock" ]; then
    .venv/bin/python -m pip install -q -e '.[dev]'
    { echo "# Exact versions a fresh install gets (pip install -c constraints.txt -e .[dev])."
      echo "# Regenerate after changing pyproject.toml: scripts/bootstrap.sh --relock"
      .venv/bin/python -m pip freeze --exclude-editable | grep -v '^nlumon'; } > constraints.txt
    want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
  else
    .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
  fi
  echo "$want" > "$stamp"
fi
log "ready: $(.venv/bin/python --version), java $(java -version 2>&1 | head -1 | cut -d'"' -f2), $(clickhouse-server --version 2>/dev/null | head -1 || echo clickhouse-server)"
