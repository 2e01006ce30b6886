#!/usr/bin/env bash
# Start or stop a Docker daemon for the image build and the compose test, idempotently.
#   scripts/dockerd.sh install   Debian's docker.io, docker-compose and debootstrap, when missing
#   scripts/dockerd.sh start     start dockerd unless one already answers; prints "started" when
#                                this call started it, "running" when one was already there
#   scripts/dockerd.sh stop      stop the daemon that `start` started (never another one)
# Only root may start dockerd; elsewhere `start` fails with one line and the caller skips.
set -euo pipefail

PIDFILE=${AUTOML_DOCKERD_PIDFILE:-/run/automl-dockerd.pid}
LOG=${AUTOML_DOCKERD_LOG:-/var/log/automl-dockerd.log}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

answers() { docker info >/dev/null 2>&1; }

install() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "dockerd.sh: installing Debian's ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

start() {
    if answers; then
        echo running
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "dockerd.sh: no Docker daemon answers and only root can start one" >&2
        return 1
    fi
    command -v dockerd >/dev/null || install
    # Its own pid file: a daemon started by systemd or by hand is never stopped by `stop`.
    dockerd --pidfile /run/automl-dockerd.daemon.pid >>"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 60); do
        if answers; then
            echo started
            return 0
        fi
        if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
            rm -f "$PIDFILE"
            echo "dockerd.sh: dockerd exited at start; see $LOG: $(tail -n 1 "$LOG")" >&2
            return 1
        fi
        sleep 0.5
    done
    echo "dockerd.sh: dockerd did not answer within 30 s; see $LOG" >&2
    return 1
}

stop() {
    [ -f "$PIDFILE" ] || return 0
    local pid
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        # dockerd stops its containers first (10 s each at most); then give up waiting.
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
    fi
    rm -f "$PIDFILE"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: scripts/dockerd.sh install|start|stop" >&2
        exit 2
        ;;
esac
