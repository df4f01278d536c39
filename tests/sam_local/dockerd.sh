#!/usr/bin/env bash
# Makes a Docker engine answer for `sam local`: uses the one that answers, else starts dockerd (installing Debian's
# docker.io first on a fresh machine). Exits 0 when `docker version` reaches a server; otherwise prints one line,
# "docker unavailable: <why>", on stderr and exits 1 (the sam-local tests then skip with that line as the reason).
#
# The daemon keeps Docker's default bridge (SAM reaches each container through a port published on 127.0.0.1) but
# touches neither iptables nor IP forwarding: a container reaches the host it runs on and nothing else.
# It is left running for the next run and for other worktrees; its log is $DOCKERD_LOG.
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/connvault-dockerd.log}
PIDFILE=/var/run/docker.pid
CONTAINERD_PIDFILE=/var/run/docker/containerd/containerd.pid
START_SECONDS=90

unavailable() {
    echo "docker unavailable: $*" >&2
    exit 1
}

answers() {
    timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# A pid file left by a daemon that died (a killed session, a reboot) may name a process that reused the pid. dockerd
# refuses to start over a live pid in docker.pid, and it would adopt (and later kill) whatever process containerd.pid
# names, so each is removed unless it names the program it was written for.
drop_if_stale() {
    local file=$1 program=$2 pid
    [ -s "$file" ] || return 0
    pid=$(tr -dc '0-9' <"$file")
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$program" ]; then
        return 1
    fi
    rm -f "$file"
}

answers && exit 0
[ "$(id -u)" = 0 ] || unavailable "no Docker engine answers, and only root can install or start dockerd"

# One starter at a time: parallel test runs (other worktrees, xdist workers) all arrive here.
exec 9>/var/lock/connvault-dockerd.lock
flock -w 600 9 || unavailable "timed out waiting for another run starting dockerd"
answers && exit 0

if ! command -v dockerd >/dev/null; then
    command -v apt-get >/dev/null || unavailable "dockerd is not installed and there is no apt-get to install it"
    echo "installing docker.io (apt-get) ..." >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io; } \
        >>"$DOCKERD_LOG" 2>&1 || unavailable "apt-get install docker.io failed (see $DOCKERD_LOG)"
fi
[ -d /sys/fs/cgroup ] || unavailable "no cgroup filesystem, containers cannot run here"

if ! drop_if_stale "$PIDFILE" dockerd; then
    # A dockerd of ours is running but does not answer yet: it is starting (or stuck); wait for it, never kill it.
    for _ in $(seq "$START_SECONDS"); do answers && exit 0; sleep 1; done
    unavailable "dockerd (pid $(cat "$PIDFILE")) runs but does not answer (see $DOCKERD_LOG)"
fi
drop_if_stale "$CONTAINERD_PIDFILE" containerd || true

echo "starting dockerd (log: $DOCKERD_LOG) ..." >&2
# fd 9 (the lock) is closed for dockerd, or the next starter would wait on it for as long as dockerd lives.
setsid dockerd --iptables=false --ip-masq=false --ip-forward=false --pidfile "$PIDFILE" \
    </dev/null >>"$DOCKERD_LOG" 2>&1 9>&- &
for _ in $(seq "$START_SECONDS"); do
    answers && exit 0
    kill -0 $! 2>/dev/null || unavailable "dockerd exited at start: $(tail -n 1 "$DOCKERD_LOG")"
    sleep 1
done
unavailable "dockerd did not answer within ${START_SECONDS} s (see $DOCKERD_LOG)"
