#!/usr/bin/env bash
# `make services`: each service as its own process, wired by BROKER_URL and EVENTSTORE_URI.
#   gateway         HTTP API on $GATEWAY_PORT (8000)
#   webhook-ingest  provider webhooks on $WEBHOOK_INGEST_PORT (8001)
#   transactions    worker; /healthz, /readyz and /breakers on $TRANSACTIONS_HEALTH_PORT (8010)
#   billing         worker; /healthz, /readyz and /breakers on $BILLING_HEALTH_PORT (8011)
# Ctrl-C / TERM stops every child; if one child dies, the others are stopped too.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON_BIN:-.venv/bin/python}"
export BROKER_URL="${BROKER_URL:-amqp://guest:guest@localhost:5672/}"
export DATA_DIR="${DATA_DIR:-./data}"
export EVENTSTORE_URI="${EVENTSTORE_URI:-sqlite:///$DATA_DIR/events.db}"  # one store shared by every process
GATEWAY_PORT="${GATEWAY_PORT:-8000}"
WEBHOOK_INGEST_PORT="${WEBHOOK_INGEST_PORT:-8001}"
TRANSACTIONS_HEALTH_PORT="${TRANSACTIONS_HEALTH_PORT:-8010}"
BILLING_HEALTH_PORT="${BILLING_HEALTH_PORT:-8011}"
mkdir -p "$DATA_DIR"

pids=()
start() {  # start NAME PORT MODULE
  local name=$1 port=$2 module=$3
  PORT="$port" "$PY" -m "$module" &
  pids+=("$!")
  echo "services: started $name (pid $!, port $port)" >&2
}

stop_all() {
  trap - INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM

echo "services: BROKER_URL=${BROKER_URL%%://*}://… EVENTSTORE_URI=$EVENTSTORE_URI" >&2
# A new service is one more line here.
start transactions "$TRANSACTIONS_HEALTH_PORT" payments_transactions
start billing "$BILLING_HEALTH_PORT" payments_billing
start gateway "$GATEWAY_PORT" payments_gateway
start webhook-ingest "$WEBHOOK_INGEST_PORT" payments_webhook_ingest

set +e
wait -n "${pids[@]}"
status=$?
set -e
echo "services: a service exited (status $status): stopping the others" >&2
stop_all
exit "$status"
