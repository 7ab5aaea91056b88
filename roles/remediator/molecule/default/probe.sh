#!/bin/bash
# Verify's probe: run the sync (it fails here; its "[port-sheet]" line is what counts) and wait
# for the probe rule's incident, updated at or after T0. Up to 3 runs of the sync, 30 s each:
# a miss prints what the remediator, the journal and the sync say (stderr) before the next run,
# so a line lost once is seen in the output, and a journal source that never delivers fails.
# The result is the last line of stdout (Ansible's SSH TTY may join stderr to stdout).
# Usage: probe.sh JADA RULE T0
set -u
jada=$1 rule=$2 t0=$3
found() {
  "$jada" remediator incidents --json | python3 -c '
import json, sys
rule, t0 = sys.argv[1], sys.argv[2]
hits = [i for i in json.load(sys.stdin) if i["rule"] == rule and i["updated"] >= t0]
print(json.dumps(hits[0]) if hits else "")
sys.exit(0 if hits else 1)' "$rule" "$t0"
}
why() {
  echo "== machine-id: $(cat /etc/machine-id)"
  echo "== jada-remediator.service"
  systemctl show jada-remediator.service -p MainPID,ActiveEnterTimestamp,NRestarts
  echo "== journalctl children"; pgrep -a journalctl
  echo "== remediator status"; "$jada" remediator status
  echo "== the remediator's journal"; journalctl -u jada-remediator.service -n 60 --no-pager
  echo "== the sync's journal"; journalctl -u port-sheet-sync.service -n 4 -o json --no-pager
  echo "== incidents"; "$jada" remediator incidents --json
}
for run in 1 2 3; do
  # A failed oneshot makes systemctl say so on stderr; over Ansible's SSH TTY stderr joins
  # stdout, whose last line must stay the result.
  systemctl start port-sheet-sync.service >/dev/null 2>&1
  for _ in $(seq 30); do
    if hit=$(found); then
      echo "{\"runs\": $run, \"incident\": $hit}"
      exit 0
    fi
    sleep 1
  done
  echo "== run $run of the sync: no incident of $rule within 30 s" >&2
  why >&2
done
exit 1
