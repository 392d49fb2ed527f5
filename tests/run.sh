#!/usr/bin/env bash
# Installs what the tests need (apt-get, only what is missing), starts a
# private Postgres, checks the formatting, then runs four pipelines side
# by side, each building only what it runs:
#   plain  the Release build, every test but those the TSan
#          pipeline runs: their assertions are checked there, so a
#          third run (they run under ASan too) would only cost CPU
#   asan   the ASan+UBSan build, every test but those of asan_skip below
#   tsan   the TSan build of the tests that run the webhook listener's
#          intake thread (in process, and in the pushgw they start)
#   fuzz   the libFuzzer targets (tests/fuzz/fuzz_*.c), all at once for
#          PUSHGW_FUZZ_SECONDS each, at the lowest CPU priority
# A test process spends most of its time waiting (for Postgres, for
# mocks, for timeouts), so each pipeline runs more tests at once than
# there are cores (PUSHGW_TEST_JOBS), the longest first (their COST,
# tests/CMakeLists.txt; the longest programs run as several parts), and
# one pipeline's builds and fuzzers fill the others' idle CPU. Most of
# the tests' CPU is the private Postgres's (a database and a gateway's
# connections per test case): the total line says how much. Once the
# plain and ASan tests run the CPU is busy, so every build starts at
# once: a build at nice 10 or more waited for the others' tests and made
# its pipeline the last. The ASan build (the long pole) and the plain
# build run at normal priority, the TSan and fuzz builds (twenty seconds
# of CPU each, their pipelines short) a little below, and the fuzzers,
# whose run lasts PUSHGW_FUZZ_SECONDS whatever CPU they get, the lowest.
# The sanitizer and fuzz builds carry line tables only (-g1): what
# a report's stack needs, and a fifth less to compile. Prints each stage's
# wall and CPU seconds, the total and the private Postgres's CPU, and
# cleans up even when a test fails.
# Exit status: 0 only when everything passed.
#
# Environment:
#   PUSHGW_FUZZ_SECONDS  seconds per fuzz target (default 15; 0 skips fuzzing)
#   PUSHGW_SKIP_ASAN=1   skip the ASan+UBSan pipeline (faster local runs)
#   PUSHGW_SKIP_TSAN=1   skip the TSan pipeline
#   PUSHGW_JOBS          parallel build jobs per pipeline (default: nproc)
#   PUSHGW_TEST_JOBS     tests at once per pipeline (default: 2 x nproc)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=${PUSHGW_JOBS:-$(nproc)}
test_jobs=${PUSHGW_TEST_JOBS:-$((2 * $(nproc)))}
fuzz_seconds=${PUSHGW_FUZZ_SECONDS:-15}
# The test programs of the TSan pipeline (all their parts); their targets
# bring the pushgw binary and the programs they start (pgw_add_test,
# tests/support).
tsan_tests=(test_http_api test_hostile test_service)
# Tests (or parts, <program>.<part>) the ASan pipeline leaves to plain's:
#   test_deb     configures and builds a Release tree of its own (no
#                sanitizer) and checks the package made from it: the same
#                run in both pipelines.
#   test_deploy  but its part 'config' (check-config and render of the
#                example under ASan): quickstart.sh runs, serving until a
#                signal, failing, checked from outside: shell, initdb,
#                certificates, node and curl, with pushgw doing what the
#                service tests (test_service, test_durability's SIGTERM
#                drain, test_leancloud) run under ASan already.
asan_skip=(test_deb test_deploy.quickstart test_deploy.serving
    test_deploy.failure)
# A ctest -R/-E expression for these programs or tests, with their parts.
tests_re() { local IFS='|'; echo "^($*)(\\.[a-z0-9_]+)?\$"; }
t_start=$SECONDS

log() { printf '==> %s\n' "$*"; }
die() { printf 'tests/run.sh: %s\n' "$*" >&2; exit 1; }

# --- 1. packages ----------------------------------------------------------
. "$root/deploy/packages.sh"
pgw_install_packages "${PGW_BUILD_PACKAGES[@]}" "${PGW_TEST_PACKAGES[@]}"

# --- 2. private Postgres --------------------------------------------------
pgbin=$(pgw_pg_bindir) || die "no PostgreSQL server binaries found"
pgdir=$(mktemp -d /tmp/pushgw-pg.XXXXXX)
# The socket lives here: other users (the package test's 'pushgw', a
# service user) must reach it; the cluster's own folder stays 0700.
chmod 755 "$pgdir"
as_pg() { "$@"; }
if [ "$(id -u)" = 0 ]; then
    # initdb refuses to run as root: the cluster belongs to 'postgres'.
    id postgres >/dev/null 2>&1 || die "user 'postgres' is missing (package postgresql not installed?)"
    chown postgres: "$pgdir"
    as_pg() { runuser -u postgres -- "$@"; }
fi
# Below the ports tu_free_port() hands out (20000-31999) and the
# ephemeral ones (32768 and up).
pgport=${PUSHGW_TEST_PGPORT:-$(( 15000 + RANDOM % 5000 ))}
pids=()

cleanup() {
    local rc=$? pid
    for pid in "${pids[@]}"; do
        kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    done
    if [ -f "$pgdir/data/postmaster.pid" ]; then
        as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$pgdir"
    exit $rc
}
trap cleanup EXIT INT TERM

log "starting a private PostgreSQL in $pgdir (port $pgport, unix socket)"
as_pg "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth=trust \
    --no-instructions -E UTF8 --locale=C >"$pgdir/initdb.log" 2>&1 \
    || { cat "$pgdir/initdb.log"; die "initdb failed"; }
# Three pipelines' tests at once, each with its gateways' pools.
as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/postgres.log" -w \
    -o "-k $pgdir -c listen_addresses=127.0.0.1 -p $pgport -c fsync=off -c synchronous_commit=off -c max_connections=600" \
    start >/dev/null || { cat "$pgdir/postgres.log"; die "postgres did not start"; }
export PUSHGW_TEST_DATABASE_URL="host=$pgdir port=$pgport user=postgres dbname=postgres"
export PUSHGW_TEST_PGBIN="$pgbin"
export PUSHGW_TEST_REQUIRE_DB=1

out="$root/build-ci"
mkdir -p "$out"
rm -f "$out"/*.result
failed=()

# --- 3. formatting (STYLE.md: .clang-format, checked in CI) ---------------
if command -v clang-format >/dev/null 2>&1; then
    log "checking formatting with $(clang-format --version | head -n 1)"
    mapfile -t csrc < <(cd "$root" && { git ls-files '*.c' '*.h' 2>/dev/null \
        || find gateway tests -name '*.[ch]'; })
    if [ ${#csrc[@]} -gt 0 ] && ! clang-format --dry-run --Werror "${csrc[@]}" \
            >"$out/format.log" 2>&1; then
        grep -E '^[^ ].*(warning|error):' "$out/format.log" | head -20
        failed+=("format: run clang-format -i on the files above")
    fi
fi

# --- 4. the pipelines -------------------------------------------------------
# CPU seconds (user + system) of the processes this shell has waited for:
# what a step computed, beside the wall time it took.
child_cpu() { # pid of the shell
    local stat f
    read -r stat <"/proc/$1/stat"
    read -ra f <<<"${stat##*) }"
    echo $(((f[13] + f[14]) / $(getconf CLK_TCK)))
}

# step PIPELINE STEP CMD...: runs CMD with its output in the pipeline's
# log, and records "STEP <seconds>s/<CPU seconds>" (or "STEP FAILED") in
# its result.
step() {
    local p=$1 s=$2 t0=$SECONDS me=$BASHPID c0 rc=0
    shift 2
    c0=$(child_cpu $me)
    printf '\n==> %s: %s\n' "$p" "$*" >>"$out/$p.log"
    "$@" >>"$out/$p.log" 2>&1 || rc=$?
    if [ $rc = 0 ]; then
        printf '%s %ds/%d  ' "$s" $((SECONDS - t0)) $(($(child_cpu $me) - c0)) \
            >>"$out/$p.result"
    else
        printf '%s FAILED after %ds' "$s" $((SECONDS - t0)) >>"$out/$p.result"
    fi
    return $rc
}

configure() { # dir, cmake args...
    local dir=$1
    shift
    cmake -S "$root" -B "$dir" -DPUSHGW_WERROR=ON "$@"
}

ctest_in() { # dir, ctest args...
    local dir=$1
    shift
    (cd "$dir" && ctest --output-on-failure -j "$test_jobs" --timeout 600 "$@")
}

# Configured as the Debian package is (Release, prefix /usr), so test_deb
# packages the binary these tests ran instead of building it again.
pipeline_plain() {
    local d="$out/plain" plain_skip=()
    [ "${PUSHGW_SKIP_TSAN:-}" = 1 ] ||
        plain_skip=(-E "$(tests_re "${tsan_tests[@]}")")
    step plain configure configure "$d" -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_INSTALL_PREFIX=/usr &&
        step plain build cmake --build "$d" -j "$jobs" &&
        PUSHGW_DEB_PREBUILT=$d step plain tests ctest_in "$d" "${plain_skip[@]}"
}

pipeline_asan() {
    local d="$out/asan"
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    step asan configure configure "$d" -DCMAKE_BUILD_TYPE=Debug \
            -DCMAKE_C_FLAGS_DEBUG=-g1 -DPUSHGW_SANITIZE=address,undefined &&
        step asan build cmake --build "$d" -j "$jobs" &&
        step asan tests ctest_in "$d" -E "$(tests_re "${asan_skip[@]}")"
}

# A race stops the process at once.
pipeline_tsan() {
    local d="$out/tsan"
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tests/tsan.supp}
    step tsan configure configure "$d" -DCMAKE_BUILD_TYPE=Debug \
            -DCMAKE_C_FLAGS_DEBUG=-g1 -DPUSHGW_SANITIZE=thread &&
        step tsan build nice -n 5 cmake --build "$d" -j "$jobs" \
            --target "${tsan_tests[@]}" &&
        step tsan tests ctest_in "$d" -R "$(tests_re "${tsan_tests[@]}")"
}

# Every fuzz target at once, each on a copy of its seed corpus.
fuzz_all() {
    local d=$1 f name work rc=0 fpids=() names=()
    for f in "$d"/tests/fuzz/fuzz_*; do
        [ -x "$f" ] || continue
        name=$(basename "$f")
        name=${name#fuzz_}
        work="$d/corpus-$name"
        rm -rf "$work"
        mkdir -p "$work"
        [ -d "$root/tests/fuzz/corpus/$name" ] &&
            cp -r "$root/tests/fuzz/corpus/$name"/. "$work"/
        # A crashing input is written beside the log, not into the tree.
        nice -n 19 "$f" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
            -artifact_prefix="$d/fuzz_$name-" "$work" >"$d/fuzz_$name.log" 2>&1 &
        fpids+=($!)
        names+=("$name")
    done
    [ ${#names[@]} -gt 0 ] || { echo "no fuzz targets built"; return 1; }
    for i in "${!fpids[@]}"; do
        if wait "${fpids[$i]}"; then
            printf '%s: ' "${names[$i]}"
            grep -E 'stat::number_of_executed_units' \
                "$d/fuzz_${names[$i]}.log" || echo
        else
            echo "fuzz target '${names[$i]}' FAILED:"
            tail -40 "$d/fuzz_${names[$i]}.log"
            rc=1
        fi
    done
    return $rc
}

pipeline_fuzz() {
    local d="$out/fuzz"
    CC=clang step fuzz configure configure "$d" -DCMAKE_BUILD_TYPE=Debug \
            -DCMAKE_C_FLAGS_DEBUG=-gline-tables-only -DPUSHGW_FUZZ=ON &&
        step fuzz build nice -n 8 cmake --build "$d" -j "$jobs" \
            --target fuzz &&
        step fuzz run fuzz_all "$d"
}

run_pipeline() { # name
    : >"$out/$1.log"
    : >"$out/$1.result"
    local t0=$SECONDS
    "pipeline_$1"
    local rc=$?
    printf '| total %ds\n' $((SECONDS - t0)) >>"$out/$1.result"
    return $rc
}

names=(plain)
[ "${PUSHGW_SKIP_ASAN:-0}" = 1 ] || names+=(asan)
[ "${PUSHGW_SKIP_TSAN:-0}" = 1 ] || names+=(tsan)
if [ "$fuzz_seconds" != 0 ] && command -v clang >/dev/null 2>&1 \
   && [ -f "$root/tests/fuzz/CMakeLists.txt" ]; then
    names+=(fuzz)
fi
log "running the pipelines side by side: ${names[*]} (logs in build-ci/<name>.log)"
for n in "${names[@]}"; do
    # set -m: each pipeline leads its own process group, killed as one.
    set -m
    (set +e; run_pipeline "$n") &
    set +m
    pids+=($!)
done
for i in "${!names[@]}"; do
    n=${names[$i]}
    if wait "${pids[$i]}"; then
        log "$n: $(cat "$out/$n.result")"
    else
        log "$n: $(cat "$out/$n.result")"
        tail -80 "$out/$n.log"
        failed+=("$n (build-ci/$n.log)")
    fi
done
pids=()

# The private Postgres's CPU: its backends are the postmaster's children.
pg_cpu=?
if read -r pgpid <"$pgdir/data/postmaster.pid" 2>/dev/null &&
    read -r stat <"/proc/$pgpid/stat" 2>/dev/null; then
    read -ra f <<<"${stat##*) }"
    pg_cpu=$(((f[11] + f[12] + f[13] + f[14]) / $(getconf CLK_TCK)))
fi
log "total: $((SECONDS - t_start))s (postgres: ${pg_cpu}s CPU)"
if [ ${#failed[@]} -gt 0 ]; then
    printf 'tests/run.sh: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
log "all tests passed"
