#!/usr/bin/env bash
# A RabbitMQ broker on loopback for tests and local runs (Debian's rabbitmq-server).
# usage: scripts/broker.sh start|stop|status
set -euo pipefail
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
case "${1:-}" in
  start)
    if rabbitmqctl -q status >/dev/null 2>&1; then echo "broker already running"; exit 0; fi
    rabbitmq-server -detached
    # Waits for the node to come up (at most ~60 s), then for the broker inside it.
    for _ in $(seq 1 60); do rabbitmqctl -q ping >/dev/null 2>&1 && break; sleep 1; done
    rabbitmqctl -q await_startup
    echo "broker listening on amqp://127.0.0.1:5672 (guest/guest, loopback only)"
    ;;
  stop) rabbitmqctl -q stop ;;
  status) rabbitmqctl -q status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
