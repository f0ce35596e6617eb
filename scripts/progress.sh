# Sourced by the setup and test scripts: `long LABEL COMMAND...` runs a step that can take minutes (a cold
# build, a download) and says so every 30 s with the time elapsed, then how long it took, so a first run on a fresh
# machine never sits silent.
long() {
  local label="$1"
  shift
  local started=$SECONDS
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 30); do
      sleep 1
      kill -0 "$pid" 2>/dev/null || break 2
    done
    printf '%s: still running (%ss)\n' "$label" "$((SECONDS - started))"
  done
  local rc=0
  wait "$pid" || rc=$?
  if [ "$rc" -eq 0 ]; then
    printf '%s: done in %ss\n' "$label" "$((SECONDS - started))"
  else
    printf '%s: failed (exit %s) after %ss\n' "$label" "$rc" "$((SECONDS - started))"
  fi
  return "$rc"
}
