# Sourced by scripts that apt-get install what the tests need (bash).
# apt_get waits for another package manager's locks (up to APT_LOCK_WAIT seconds, default 600)
# instead of failing; its output is appended to $apt_log; messages are prefixed with $APT_WHO.

APT_LOCK_WAIT=${APT_LOCK_WAIT:-600}
APT_LOCKS=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock
  /var/cache/apt/archives/lock)
APT_WHO=${APT_WHO:-apt}

# "pid (command)" of the process holding the fcntl lock apt and dpkg take on a file, or nothing
lock_holder() {
  local file=$1 dev ino pid
  [ -e "$file" ] || return 0
  dev=$(printf '%02x:%02x' "$(stat -c %Hd "$file")" "$(stat -c %Ld "$file")")
  ino=$(stat -c %i "$file")
  pid=$(awk -v id="$dev:$ino" '$2 != "->" && $6 == id { print $5; exit }' /proc/locks)
  [ -n "$pid" ] && echo "$pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo '?'))"
  return 0
}

# apt-get "$@" with its output appended to $apt_log, waiting for other package managers.
# DPkg::Lock::Timeout makes apt itself wait for the dpkg locks; apt (2.6 at least) does not
# apply it to the lists lock of `apt-get update` nor to the archives lock and fails at once
# there, so a failure to get a lock is retried until the same deadline. Says once that it waits.
apt_get() {
  local deadline=$((SECONDS + APT_LOCK_WAIT)) said="" held="" lock from
  while :; do
    if [ -z "$said" ]; then
      for lock in "${APT_LOCKS[@]}"; do
        held=$(lock_holder "$lock")
        [ -n "$held" ] && break
      done
      if [ -n "$held" ]; then
        echo "$APT_WHO: waiting up to ${APT_LOCK_WAIT}s for $lock, held by process $held"
        said=1
      fi
    fi
    from=$(($(wc -c <"$apt_log") + 1))
    if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$APT_LOCK_WAIT" "$@" \
      >>"$apt_log" 2>&1; then
      return 0
    fi
    held=$(tail -c +"$from" "$apt_log" |
      sed -n 's/^E: Could not get lock \(.*\)\. It is held by \(process .*\)$/\1, held by \2/p' |
      head -n 1)
    [ -n "$held" ] && [ "$SECONDS" -lt "$deadline" ] || return 1
    if [ -z "$said" ]; then
      echo "$APT_WHO: waiting up to ${APT_LOCK_WAIT}s for $held"
      said=1
    fi
    sleep 3
  done
}
