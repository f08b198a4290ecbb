#!/usr/bin/env bash
# `make bench`: installs wrk when missing (Debian package), checks RabbitMQ, then runs bench/run.py, which
# starts every target, drives each with wrk and prints the table (see bench/run.py for what is measured).
# Arguments are passed on, e.g. `bash bench/run.sh --duration 5 --runs 1` for a quick look.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  echo "bench: installing wrk (apt-get install -y wrk)" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y wrk >/dev/null 2>&1 || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y wrk >/dev/null; }
fi
command -v rabbitmqctl >/dev/null 2>&1 || { echo "bench: rabbitmqctl not found: the broker and services targets need the local RabbitMQ" >&2; exit 1; }
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  echo "bench: RabbitMQ does not answer on 127.0.0.1:5672" >&2
  exit 1
fi

exec .venv/bin/python -m bench.run "$@"
