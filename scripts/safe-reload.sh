#!/bin/sh
# safe-reload.sh NEW_CONFIG: put a new lb configuration live and reload lb,
# or change nothing. For cron jobs, CI and configuration management.
#
#   1. Takes a lock (flock(1) on LB_LOCKFILE, next to the pid file) without
#      waiting: if another safe-reload holds it, says so and exits 3.
#   2. Copies NEW_CONFIG to a temporary file next to the live configuration
#      and checks that copy with `lb -c`, so what is checked is exactly what
#      goes live.
#   3. Keeps the live configuration as LB_CONFIG.prev, then renames the copy
#      over LB_CONFIG (rename(2): readers see the old file or the new one).
#   4. Reloads: `lb -f LB_CONFIG -p LB_PIDFILE -D -sf $(cat LB_PIDFILE)`,
#      which exits 0 only once the new generation serves; the old one then
#      finishes its connections and exits. With no pid file, this starts lb.
#   5. If the reload fails (lb says why on stderr), the old generation keeps
#      serving: puts LB_CONFIG.prev back in place and exits 4.
#
# Exit status:
#   0  the new configuration is live and a new generation serves it
#   1  NEW_CONFIG is invalid (lb -c failed): nothing was changed
#   2  usage error: no NEW_CONFIG, too many arguments, NEW_CONFIG unreadable,
#      or a bad setting
#   3  another reload holds the lock: nothing was changed
#   4  the reload failed: the previous configuration is back in place and
#      the running lb, if any, keeps serving it
#   5  the reload failed and the previous configuration could not be put
#      back: LB_CONFIG holds NEW_CONFIG, which no lb serves; fix it by hand
#      (LB_CONFIG.prev is the previous one)
#   6  the new configuration could not be installed (copy, rename, lock file
#      or flock(1) missing): nothing was changed
#
# Environment (defaults in parentheses):
#   LB_BIN       the lb binary (/usr/local/bin/lb)
#   LB_CONFIG    the live configuration file (/etc/lb/lb.toml)
#   LB_PIDFILE   the pid file of the running lb (/run/lb/lb.pid)
#   LB_LOCKFILE  the lock file ($LB_PIDFILE.lock)
#   LB_ARGS      more arguments for every lb command, after -f LB_CONFIG,
#                split on blanks (e.g. "-q" or "-f /etc/lb/extra.toml")

LB_BIN=${LB_BIN:-/usr/local/bin/lb}
LB_CONFIG=${LB_CONFIG:-/etc/lb/lb.toml}
LB_PIDFILE=${LB_PIDFILE:-/run/lb/lb.pid}
LB_LOCKFILE=${LB_LOCKFILE:-$LB_PIDFILE.lock}
LB_ARGS=${LB_ARGS:-}

me=safe-reload

say() {
	printf '%s: %s\n' "$me" "$*" >&2
}

if [ $# -ne 1 ] || [ -z "$1" ]; then
	printf 'usage: %s NEW_CONFIG\n' "$0" >&2
	exit 2
fi
new=$1
if [ ! -f "$new" ] || [ ! -r "$new" ]; then
	say "$new: not a readable file"
	exit 2
fi

# 1. The lock. Descriptor 9 stays open (and locked) until this script exits;
# every lb command below closes it (9>&-), so that no lb daemon inherits it
# and holds the lock for ever.
if ! command -v flock >/dev/null 2>&1; then
	say "flock(1) is missing (Debian: util-linux)"
	exit 6
fi
if ! exec 9>>"$LB_LOCKFILE"; then
	say "cannot open the lock file $LB_LOCKFILE"
	exit 6
fi
if ! flock -n 9; then
	say "another reload is running (it holds $LB_LOCKFILE): nothing changed"
	exit 3
fi

dir=$(dirname "$LB_CONFIG")
base=$(basename "$LB_CONFIG")
tmp=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$tmp" ]; then
		rm -f "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# copy_next_to_live SOURCE: copy SOURCE to a temporary file next to LB_CONFIG, with
# the live file's mode and owner when there is one, and leave its name in
# $tmp.
copy_next_to_live() {
	tmp=$(mktemp "$dir/.$base.XXXXXX") || return 1
	if [ -f "$LB_CONFIG" ]; then
		cp -p "$LB_CONFIG" "$tmp" || return 1
	fi
	cat "$1" >"$tmp" || return 1
}

# 2. Copy and check.
if ! copy_next_to_live "$new"; then
	say "cannot copy $new next to $LB_CONFIG: nothing changed"
	exit 6
fi
# shellcheck disable=SC2086 # LB_ARGS is a list of arguments
if ! "$LB_BIN" -c -f "$tmp" $LB_ARGS >/dev/null 9>&-; then
	say "$new is invalid (checked as its copy $tmp, see above): nothing changed"
	exit 1
fi

# 3. Keep the previous configuration, then put the new one in place.
had_prev=""
if [ -f "$LB_CONFIG" ]; then
	had_prev=1
	prev_tmp=""
	if ! { prev_tmp=$(mktemp "$dir/.$base.prev.XXXXXX") &&
		cp -p "$LB_CONFIG" "$prev_tmp" &&
		mv -f "$prev_tmp" "$LB_CONFIG.prev"; }; then
		if [ -n "$prev_tmp" ]; then
			rm -f "$prev_tmp"
		fi
		say "cannot keep $LB_CONFIG as $LB_CONFIG.prev: nothing changed"
		exit 6
	fi
fi
if ! mv -f "$tmp" "$LB_CONFIG"; then
	say "cannot rename $tmp to $LB_CONFIG: nothing changed"
	exit 6
fi
tmp=""

# 4. Reload.
old=$(cat "$LB_PIDFILE" 2>/dev/null)
case $old in
*[!0-9]*)
	say "$LB_PIDFILE does not hold a pid ('$old'): not signalling it"
	old=""
	;;
esac
if [ -z "$old" ]; then
	say "no pid in $LB_PIDFILE: starting lb"
fi
# shellcheck disable=SC2086 # LB_ARGS is a list of arguments; $old is 0 or 1 pid
if "$LB_BIN" -f "$LB_CONFIG" $LB_ARGS -p "$LB_PIDFILE" -D -sf $old 9>&-; then
	say "reloaded: pid $(cat "$LB_PIDFILE" 2>/dev/null) serves $LB_CONFIG${old:+; pid $old finishes its connections and exits}"
	exit 0
fi

# 5. Put the previous configuration back.
say "reload failed (see above)${old:+: pid $old keeps serving}; putting the previous configuration back"
restore() {
	if [ -n "$had_prev" ]; then
		copy_next_to_live "$LB_CONFIG.prev" && mv -f "$tmp" "$LB_CONFIG"
	else
		rm -f "$LB_CONFIG"
	fi
}
if ! restore; then
	say "cannot put $LB_CONFIG.prev back as $LB_CONFIG: $LB_CONFIG holds $new, which no lb serves; fix it by hand"
	exit 5
fi
tmp=""
exit 4
