#!/usr/bin/env bash
# Molecule for every role given, one after the other; stops at the first failure.
# A failure ends with a digest: the failed tasks and their messages, so that the tail of a
# long CI log names what failed (the full output stays above it and in reports/molecule-ROLE.log).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/reports"
for role in "$@"; do
  echo "== molecule test: $role"
  log="$root/reports/molecule-$role.log"
  (cd "$root/roles/$role" && molecule test) 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    echo
    echo "== molecule test: $role FAILED (exit $rc); the failed tasks:"
    # The task header before each failure, and the failure itself (cut to 4000 characters).
    # (Molecule frames Ansible's lines with "  │ "; the colours and the frame are dropped.)
    sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^ *│ \{0,1\}//' "$log" | awk '
      /^PLAY \[/ { play = $0 }
      /^TASK \[/ { task = $0 }
      /^(fatal|failed): \[/ { print play; print task; print substr($0, 1, 4000); print "" }'
    exit "$rc"
  fi
done
