#!/usr/bin/env bash
# Run every coverage-guided harness (fuzz/fuzz_*.py, atheris) for SECONDS each (default 10),
# one after the other, and print the executions and findings of each. Exit status 1 if any
# harness found an input that raises something other than a VmcorekitError, hangs (-timeout)
# or exceeds the memory bound; the input is kept in $FUZZ_WORK/crashes/<harness>/.
#
#   fuzz/run.sh [SECONDS] [HARNESS...]          e.g. fuzz/run.sh 10, fuzz/run.sh 300 kdump elf
#
# A fixed libFuzzer seed ($FUZZ_SEED, default 1) keeps CI runs reproducible.
# $FUZZ_WORK (default: a fresh temporary folder) keeps the grown corpora between runs.
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-10}"
shift || true
if [ "$#" -gt 0 ]; then
  HARNESSES=("$@")
else
  HARNESSES=()
  for f in fuzz_*.py; do HARNESSES+=("${f#fuzz_}"); done
  HARNESSES=("${HARNESSES[@]%.py}")
fi
python3 -c "import atheris" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check atheris
export FUZZ_WORK="${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/vmcorekit-fuzz.XXXXXX")}"
# One malloc arena per thread reserves 64 MiB of address space each: with the address-space
# bound of the harnesses, a few threads over a long run would look like a memory blow-up.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONHASHSEED=0 MALLOC_ARENA_MAX=2
LOGS="$FUZZ_WORK/logs"
mkdir -p "$LOGS"

status=0
total=0
printf '%-11s %10s %9s %8s  %s\n' harness executions exec/s corpus result
for h in "${HARNESSES[@]}"; do
  log="$LOGS/$h.log"
  mark="$LOGS/$h.start"
  touch "$mark"  # findings of this run only ($FUZZ_WORK may hold older ones)
  # libFuzzer's -max_total_time counts fuzzing only; timeout(1) bounds start-up too.
  timeout -k 5 $((SECONDS_EACH + 60)) python3 "fuzz_$h.py" -max_total_time="$SECONDS_EACH" -seed="${FUZZ_SEED:-1}" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(ls "$FUZZ_WORK/$h" 2>/dev/null | wc -l)
  found=$(find "$FUZZ_WORK/crashes/$h" -type f -newer "$mark" 2>/dev/null | sort)
  if [ "$rc" -eq 0 ] && [ -z "$found" ]; then
    result=ok
  else
    result="FOUND (exit $rc): $(echo $found)"
    status=1
    grep -m1 -E "Uncaught Python exception|ERROR: libFuzzer|==ERROR" "$log" || true
    grep -A12 -m1 "Traceback" "$log" | sed 's/^/    /' || true
  fi
  printf '%-11s %10s %9s %8s  %s\n' "$h" "${execs:-0}" "${rate:-0}" "$corpus" "$result"
  total=$((total + ${execs:-0}))
done
echo "total executions: $total  (logs and corpora: $FUZZ_WORK)"
exit $status
