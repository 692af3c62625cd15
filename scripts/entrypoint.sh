#!/bin/sh
# entrypoint.sh: container entrypoint for lb that stays PID 1 across reloads.
#
#   docker run ... lb-image [LB_ARGUMENT...]
#   docker kill -s HUP <container>      reload: a new generation replaces the old
#   docker stop <container>             stop every generation now
#
# lb runs in the foreground as a child of this script (no -D), with -p. The
# script waits for its children and reaps them, and every orphan that the
# kernel hands to PID 1, so no zombie piles up in the container.
#
# Signals:
#   SIGHUP, SIGUSR2  Reload. The configuration is checked with `lb -c` first;
#                    then a new generation starts as
#                    `lb -f LB_CONFIG -p LB_PIDFILE ARGUMENT... -sf <pids>`
#                    naming every generation still running. Once it serves,
#                    it tells them to finish their connections and exit. If
#                    the check fails or the new generation exits before it
#                    serves, the old one keeps serving, this script keeps
#                    running and says on stderr that the reload failed.
#   SIGTERM, SIGINT  Forward SIGTERM (stop at once) to every generation, and
#                    exit once the last one has exited. SIGKILL follows after
#                    LB_STOP_TIMEOUT seconds.
#   SIGUSR1          Forward SIGUSR1 (soft stop: finish the connections in
#                    flight, then exit) to every generation, and exit once the
#                    last one has exited.
# Send reload signals to this script, not to lb: a generation that lb starts
# by itself on SIGHUP is not a child of this script, which would exit (and
# end the container) when the generation it knows of exits.
#
# Exit status: the exit status of the last generation to exit (0 after a
# SIGTERM, 1 if lb could not start, 128+N if it was killed by signal N); 2
# when this script is misused.
#
# Arguments: passed to every lb command after `-f LB_CONFIG`, e.g. `-q` or
# `-f /etc/lb/extra.toml`. (Reloads take the listening sockets over through
# the admin socket without any argument.)
#
# Environment (defaults in parentheses):
#   LB_BIN             the lb binary (/usr/local/bin/lb)
#   LB_CONFIG          the configuration file (/etc/lb/lb.toml)
#   LB_PIDFILE         the pid file, written by each generation once it serves
#                      (/run/lb/lb.pid)
#   LB_RELOAD_TIMEOUT  seconds a new generation may take to serve before the
#                      reload is given up and it is stopped (300)
#   LB_STOP_TIMEOUT    seconds between forwarding SIGTERM and SIGKILL (30)

LB_BIN=${LB_BIN:-/usr/local/bin/lb}
LB_CONFIG=${LB_CONFIG:-/etc/lb/lb.toml}
LB_PIDFILE=${LB_PIDFILE:-/run/lb/lb.pid}
LB_RELOAD_TIMEOUT=${LB_RELOAD_TIMEOUT:-300}
LB_STOP_TIMEOUT=${LB_STOP_TIMEOUT:-30}

log() {
	printf 'lb-entrypoint: %s\n' "$*" >&2
}

is_number() {
	case $1 in
	'' | *[!0-9]*) return 1 ;;
	esac
	return 0
}

for v in LB_RELOAD_TIMEOUT LB_STOP_TIMEOUT; do
	eval "val=\$$v"
	# shellcheck disable=SC2154 # val is set by the eval above
	if ! is_number "$val"; then
		log "$v must be a number of seconds, not '$val'"
		exit 2
	fi
done

# Short waits poll at 0.1 s where sleep(1) takes fractions (GNU, busybox,
# BSD), at 1 s elsewhere.
if sleep 0.01 2>/dev/null; then
	poll=0.1
else
	poll=1
fi

gens=""           # pids of the generations started and not yet reaped
status=0          # exit status of the last generation reaped
pending_reload="" # set by the signal traps, handled by the main loop
pending_stop=""   # TERM or USR1
stopping=""       # the signal forwarded to stop, once it was
kill_at=""        # when to send SIGKILL after SIGTERM (seconds since epoch)

trap 'pending_reload=1' HUP USR2
trap 'pending_stop=TERM' TERM INT
trap 'pending_stop=${pending_stop:-USR1}' USR1

now() {
	date +%s
}

# pause SECONDS: sleep in a child and wait for it, so that a trapped signal
# cuts the pause short and exited children are reaped meanwhile.
pause() {
	sleep "$1" >/dev/null 2>&1 &
	pause_pid=$!
	if ! wait "$pause_pid"; then
		kill "$pause_pid" 2>/dev/null
		wait "$pause_pid" 2>/dev/null
	fi
}

# reap: forget the generations that have exited, keeping the exit status of
# the last one. A pid whose process is gone was reaped by the shell during
# a wait; `wait PID` then returns its status at once.
reap() {
	alive=""
	for pid in $gens; do
		if kill -0 "$pid" 2>/dev/null; then
			alive="$alive $pid"
			continue
		fi
		wait "$pid"
		status=$?
		log "generation $pid exited with status $status"
	done
	gens=${alive# }
}

# start ARGUMENT...: start a generation in the background, as a child.
start() {
	"$LB_BIN" -f "$LB_CONFIG" -p "$LB_PIDFILE" "$@" </dev/null &
	new=$!
	gens="${gens:+$gens }$new"
}

# reload ARGUMENT...: check the configuration, start a new generation that
# replaces every running one, and wait until it serves or fails.
reload() {
	if ! "$LB_BIN" -c -f "$LB_CONFIG" "$@" >/dev/null </dev/null; then
		log "reload failed: $LB_CONFIG does not pass 'lb -c' (see above); generation(s) $gens keep serving"
		return 1
	fi
	old=$gens
	log "reload: starting a new generation to replace $old"
	# shellcheck disable=SC2086 # one argument per pid
	start "$@" -sf $old
	deadline=$(($(now) + LB_RELOAD_TIMEOUT))
	while :; do
		if [ "$(cat "$LB_PIDFILE" 2>/dev/null)" = "$new" ]; then
			log "reload: generation $new serves; $old finish their connections and exit"
			return 0
		fi
		if ! kill -0 "$new" 2>/dev/null; then
			wait "$new"
			st=$?
			gens=$old
			log "reload failed: the new generation $new exited with status $st before it served; generation(s) $old keep serving"
			return 1
		fi
		if [ -n "$pending_stop" ]; then
			return 1 # the main loop stops every generation, the new one too
		fi
		if [ "$(now)" -ge "$deadline" ]; then
			log "reload failed: the new generation $new did not serve within ${LB_RELOAD_TIMEOUT}s; stopping it; generation(s) $old keep serving"
			kill -TERM "$new" 2>/dev/null
			return 1
		fi
		pause "$poll"
	done
}

# stop_all SIGNAL: send SIGNAL to every generation.
stop_all() {
	stopping=$1
	kill_at=""
	if [ "$1" = TERM ]; then
		kill_at=$(($(now) + LB_STOP_TIMEOUT))
	fi
	if [ -n "$gens" ]; then
		log "received SIG$1: sending SIG$1 to generation(s) $gens"
		# shellcheck disable=SC2086 # one argument per pid
		kill -"$1" $gens 2>/dev/null
	fi
}

if ! mkdir -p "$(dirname "$LB_PIDFILE")"; then
	log "cannot create the directory of $LB_PIDFILE"
	exit 1
fi
start "$@"
log "started generation $new: $LB_BIN -f $LB_CONFIG -p $LB_PIDFILE $*"

while :; do
	if [ -n "$pending_stop" ]; then
		sig=$pending_stop
		pending_stop=""
		# A SIGTERM after a SIGUSR1 still stops at once.
		if [ -z "$stopping" ] || { [ "$sig" = TERM ] && [ "$stopping" != TERM ]; }; then
			stop_all "$sig"
		fi
	fi
	if [ -n "$pending_reload" ]; then
		pending_reload=""
		if [ -n "$stopping" ]; then
			log "not reloading: stopping"
		else
			reload "$@"
		fi
		continue
	fi
	reap
	if [ -z "$gens" ]; then
		log "no generation left: exiting with status $status"
		exit "$status"
	fi
	if [ -n "$kill_at" ] && [ "$(now)" -ge "$kill_at" ]; then
		log "generation(s) $gens still running ${LB_STOP_TIMEOUT}s after SIG$stopping: sending SIGKILL"
		# shellcheck disable=SC2086 # one argument per pid
		kill -KILL $gens 2>/dev/null
		kill_at=$(($(now) + LB_STOP_TIMEOUT))
	fi
	if [ -n "$stopping" ]; then
		pause "$poll"
	else
		pause 1
	fi
done
