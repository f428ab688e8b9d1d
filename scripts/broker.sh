#!/usr/bin/env bash
# The brokers on loopback for tests and local runs: RabbitMQ (Debian's rabbitmq-server) on
# 127.0.0.1:5672 and Mosquitto (Debian's mosquitto) on 127.0.0.1:1883. Each is started only if
# it is not running already. Mosquitto runs from a configuration written here (the Debian
# service is not used: there may be no init system), anonymous, with persistence on, so that
# persistent MQTT sessions and their queued messages survive a restart of the broker.
# usage: scripts/broker.sh start|stop|status
set -euo pipefail
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
MQTT_DIR="${GRIBSWARM_MOSQUITTO_DIR:-/tmp/gribswarm-mosquitto}"
MQTT_PORT=1883

mqtt_pid() {
  local pid
  pid="$(cat "$MQTT_DIR/mosquitto.pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

mqtt_listening() { (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null; }

mqtt_start() {
  if mqtt_pid >/dev/null; then echo "mosquitto already running"; return 0; fi
  if mqtt_listening; then echo "something already listens on 127.0.0.1:$MQTT_PORT (not started from $MQTT_DIR)"; return 0; fi
  mkdir -p "$MQTT_DIR/data"
  cat >"$MQTT_DIR/mosquitto.conf" <<EOF
# Written by scripts/broker.sh: loopback only, anonymous, persistent.
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $MQTT_DIR/data/
autosave_interval 30
pid_file $MQTT_DIR/mosquitto.pid
log_dest file $MQTT_DIR/mosquitto.log
# What a persistent session keeps for a follower while it is away (the default is 1000).
max_queued_messages 100000
EOF
  # Started as root, mosquitto becomes the user "mosquitto", which must be able to write here.
  if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then chown -R mosquitto "$MQTT_DIR"; fi
  mosquitto -c "$MQTT_DIR/mosquitto.conf" -d
  for _ in $(seq 1 100); do mqtt_listening && break; sleep 0.1; done
  mqtt_listening || { echo "mosquitto did not start: see $MQTT_DIR/mosquitto.log" >&2; return 1; }
  echo "mosquitto listening on mqtt://127.0.0.1:$MQTT_PORT (anonymous, loopback only, persistence in $MQTT_DIR/data)"
}

mqtt_stop() {
  local pid
  pid="$(mqtt_pid)" || { echo "mosquitto not running"; return 0; }
  kill "$pid"
  # It saves its persistence file on the way out.
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "mosquitto ($pid) did not stop" >&2
  return 1
}

mqtt_status() {
  local pid
  if pid="$(mqtt_pid)"; then echo "mosquitto running (pid $pid) on 127.0.0.1:$MQTT_PORT"; else echo "mosquitto not running"; return 1; fi
}

rabbit_start() {
  if rabbitmqctl -q status >/dev/null 2>&1; then echo "broker already running"; return 0; fi
  rabbitmq-server -detached
  # Waits for the node to come up (at most ~60 s), then for the broker inside it.
  for _ in $(seq 1 60); do rabbitmqctl -q ping >/dev/null 2>&1 && break; sleep 1; done
  rabbitmqctl -q await_startup
  echo "broker listening on amqp://127.0.0.1:5672 (guest/guest, loopback only)"
}

case "${1:-}" in
  start) rabbit_start && mqtt_start ;;
  stop)
    status=0
    rabbitmqctl -q stop || status=$?
    mqtt_stop || status=$?
    exit "$status"
    ;;
  status)
    status=0
    rabbitmqctl -q status || status=$?
    mqtt_status || status=$?
    exit "$status"
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
