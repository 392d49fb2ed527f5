#!/usr/bin/env bash
# Installs what the tests need (apt-get, only what is missing), builds the
# plain and the sanitizer builds, starts a private Postgres, runs every test
# of the plain and the ASan+UBSan builds with ctest and the threaded ones
# under TSan, runs each fuzz target briefly (when clang is there), and
# cleans up even when a test fails. Exit status: 0 only when everything
# passed.
#
# Environment:
#   PUSHGW_FUZZ_SECONDS  seconds per fuzz target (default 15; 0 skips fuzzing)
#   PUSHGW_SKIP_ASAN=1   skip the ASan+UBSan build (faster local runs)
#   PUSHGW_SKIP_TSAN=1   skip the TSan build
#   PUSHGW_JOBS          parallel build jobs (default: nproc)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=${PUSHGW_JOBS:-$(nproc)}
fuzz_seconds=${PUSHGW_FUZZ_SECONDS:-15}

log() { printf '==> %s\n' "$*"; }
die() { printf 'tests/run.sh: %s\n' "$*" >&2; exit 1; }

# --- 1. packages ----------------------------------------------------------
. "$root/deploy/packages.sh"
pgw_install_packages "${PGW_BUILD_PACKAGES[@]}" "${PGW_TEST_PACKAGES[@]}"

# --- 2. private Postgres --------------------------------------------------
pgbin=$(pgw_pg_bindir) || die "no PostgreSQL server binaries found"
pgdir=$(mktemp -d /tmp/pushgw-pg.XXXXXX)
pg_user=$(id -un)
as_pg() { "$@"; }
if [ "$(id -u)" = 0 ]; then
    # initdb refuses to run as root: the cluster belongs to 'postgres'.
    id postgres >/dev/null 2>&1 || die "user 'postgres' is missing (package postgresql not installed?)"
    chown postgres: "$pgdir"
    pg_user=postgres
    as_pg() { runuser -u postgres -- "$@"; }
fi
pgport=${PUSHGW_TEST_PGPORT:-$(( 20000 + RANDOM % 20000 ))}

cleanup() {
    local rc=$?
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
as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/postgres.log" -w \
    -o "-k $pgdir -c listen_addresses=127.0.0.1 -p $pgport -c fsync=off -c synchronous_commit=off -c max_connections=200" \
    start >/dev/null || { cat "$pgdir/postgres.log"; die "postgres did not start"; }
export PUSHGW_TEST_DATABASE_URL="host=$pgdir port=$pgport user=postgres dbname=postgres"
export PUSHGW_TEST_PGBIN="$pgbin"
export PUSHGW_TEST_REQUIRE_DB=1

# --- 3. build and test ------------------------------------------------------
failed=()
run_build() { # name, cmake args... (ctest_filter: a ctest -R for only some)
    local name=$1; shift
    local dir="$root/build-ci/$name"
    log "configuring and building '$name'"
    cmake -S "$root" -B "$dir" -DPUSHGW_WERROR=ON "$@" >"$dir.configure.log" 2>&1 \
        || { cat "$dir.configure.log"; failed+=("$name: configure"); return; }
    cmake --build "$dir" -j "$jobs" >"$dir.build.log" 2>&1 \
        || { tail -50 "$dir.build.log"; failed+=("$name: build"); return; }
    log "running the tests of '$name'${ctest_filter:+ (${ctest_filter})}"
    (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 600 \
        ${ctest_filter:+-R "$ctest_filter"}) || failed+=("$name: tests")
}
mkdir -p "$root/build-ci"

# --- 3a. formatting (STYLE.md: .clang-format, checked in CI) --------------
if command -v clang-format >/dev/null 2>&1; then
    log "checking formatting with $(clang-format --version | head -n 1)"
    mapfile -t csrc < <(cd "$root" && { git ls-files '*.c' '*.h' 2>/dev/null \
        || find gateway tests -name '*.[ch]'; })
    if [ ${#csrc[@]} -gt 0 ] && ! clang-format --dry-run --Werror "${csrc[@]}" \
            >"$root/build-ci/format.log" 2>&1; then
        grep -E '^[^ ].*(warning|error):' "$root/build-ci/format.log" | head -20
        failed+=("format: run clang-format -i on the files above")
    fi
fi

run_build plain -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${PUSHGW_SKIP_ASAN:-0}" != 1 ]; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    run_build asan -DCMAKE_BUILD_TYPE=Debug -DPUSHGW_SANITIZE=address,undefined
fi
# The tests that run the webhook listener's intake thread (in process, and
# in the pushgw processes they start), under ThreadSanitizer: a race stops
# the process at once.
if [ "${PUSHGW_SKIP_TSAN:-0}" != 1 ]; then
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
    ctest_filter='test_http_api|test_hostile|test_service' \
        run_build tsan -DCMAKE_BUILD_TYPE=Debug -DPUSHGW_SANITIZE=thread
fi

# --- 4. fuzz targets, briefly -------------------------------------------------
if [ "$fuzz_seconds" != 0 ] && command -v clang >/dev/null 2>&1 \
   && [ -f "$root/tests/fuzz/CMakeLists.txt" ]; then
    dir="$root/build-ci/fuzz"
    log "building the fuzz targets (clang, warnings as errors)"
    if CC=clang cmake -S "$root" -B "$dir" -DPUSHGW_FUZZ=ON -DPUSHGW_WERROR=ON \
            -DCMAKE_BUILD_TYPE=Debug >"$dir.configure.log" 2>&1 \
       && cmake --build "$dir" -j "$jobs" --target fuzz >"$dir.build.log" 2>&1; then
        for f in "$dir"/tests/fuzz/fuzz_*; do
            [ -x "$f" ] || continue
            name=$(basename "$f"); name=${name#fuzz_}
            corpus="$root/tests/fuzz/corpus/$name"
            work=$(mktemp -d)
            [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
            log "fuzzing '$name' for ${fuzz_seconds}s"
            if ! "$f" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
                    "$work" >"$dir/fuzz_$name.log" 2>&1; then
                tail -40 "$dir/fuzz_$name.log"
                failed+=("fuzz: $name")
            else
                grep -E 'stat::number_of_executed_units' "$dir/fuzz_$name.log" || true
            fi
            rm -rf "$work"
        done
    else
        tail -50 "$dir.build.log" 2>/dev/null || cat "$dir.configure.log"
        failed+=("fuzz: build")
    fi
fi

if [ ${#failed[@]} -gt 0 ]; then
    printf 'tests/run.sh: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
log "all tests passed"
