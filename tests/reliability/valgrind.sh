#!/usr/bin/env bash
# Runs end-to-end tests with every `pushgw` process (migrate and serve)
# under valgrind memcheck, then checks each process's report: no invalid
# access, no uninitialised use, nothing definitely or indirectly lost.
# Processes ended with SIGKILL by a test (crash tests) leave no summary
# and are listed as such.
#
# The daemon links jemalloc (PUSHGW_JEMALLOC): memcheck is told to take
# over its malloc as it does glibc's.
#
# Usage: tests/reliability/valgrind.sh BUILD_DIR [TEST_BINARY...]
#   default tests: tests/service/test_service tests/reliability/test_hostile
# Needs PUSHGW_TEST_DATABASE_URL (see tests/lib/testutil.h).
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILD_DIR [TEST...]}" && pwd); shift
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/service/test_service tests/reliability/test_hostile)
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }

logs=$(mktemp -d /tmp/pushgw-valgrind.XXXXXX)
wrapper=$logs/pushgw
cat >"$wrapper" <<W
#!/bin/sh
exec valgrind --quiet --soname-synonyms=somalloc=libjemalloc.so.2 \
  --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
  --track-origins=yes --log-file=$logs/vg.%p.log "$build/pushgw" "\$@"
W
chmod +x "$wrapper"

rc=0
for t in "${tests[@]}"; do
    echo "==> $t (pushgw under valgrind)"
    (cd "$build" && PUSHGW_BIN=$wrapper CMOCKA_MESSAGE_OUTPUT=stdout "./$t") \
        || { echo "test failed: $t"; rc=1; }
done

n=0; bad=0; killed=0
for f in "$logs"/vg.*.log; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    if grep -qE 'Invalid (read|write|free)|uninitialised|Mismatched free|definitely lost: [1-9]|indirectly lost: [1-9]|are definitely lost|are indirectly lost' "$f"; then
        bad=$((bad + 1)); echo "--- $f"; head -60 "$f"
    fi
    # --quiet prints nothing for a clean run; a killed process prints nothing either.
done
echo "valgrind: $n pushgw processes, $bad with errors (logs in $logs)"
[ "$bad" = 0 ] || rc=1
exit $rc
