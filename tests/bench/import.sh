#!/usr/bin/env bash
# The import benchmark of DESIGN §13: `pushgw import` of ROWS generated
# `_Installation` rows (a LeanCloud JSON Lines export: 70 % iOS, 30 %
# Android through FCM, one channel each, dates as LeanCloud writes them)
# against COPY of the same rows into the same table of a database alike.
#
#   tests/bench/import.sh PUSHGW CONNINFO ROWS WORKDIR
#
# CONNINFO names a Postgres server where databases may be created (two are,
# migrated, and dropped after); WORKDIR holds the generated files. Prints a
# short report on stderr, then one line on stdout:
#   bench import rows_per_s=… copy_rows_per_s=… ratio=…
# Each is measured twice, in the order COPY, import, import, COPY, into an
# empty table each time; both rates count from the start of the command to
# its end, the client's work included: psql streaming the COPY text, pushgw
# reading and mapping the JSON.
set -euo pipefail

[ $# = 4 ] || { echo "usage: tests/bench/import.sh PUSHGW CONNINFO ROWS WORKDIR" >&2; exit 2; }
pushgw=$1
conninfo=$2
rows=$3
work=$4
root=$(cd "$(dirname "$0")/../.." && pwd)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'tests/bench/import.sh: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
psql_on() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$conninfo dbname=$1" "${@:2}"; }

dbs=(pgw_bench_copy pgw_bench_import)
cleanup() {
    for d in "${dbs[@]}"; do psql_on postgres -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

log "import: generating $rows rows"
# One awk for both files, so the rows are the same ones.
awk -v n="$rows" -v jsonl="$work/import.jsonl" -v copy="$work/import.copy" '
BEGIN {
    for (i = 1; i <= n; i++) {
        oid = sprintf("%08x%016x", 1700000000 + i % 100000, i)
        ts = sprintf("2025-%02d-%02dT%02d:%02d:%02d.%03dZ", 1 + i % 12,
                     1 + i % 28, i % 24, i % 60, (i * 7) % 60, i % 1000)
        if (i % 10 < 7) {
            tok = sprintf("%016x%016x%016x%016x", i, i * 31, i * 131, i * 1031)
            printf "{\"objectId\":\"%s\",\"deviceType\":\"ios\",\"deviceToken\":\"%s\",\"channels\":[\"user%d\"],\"badge\":%d,\"timeZone\":\"Asia/Shanghai\",\"apnsTopic\":\"com.example.app\",\"createdAt\":\"%s\",\"updatedAt\":\"%s\"}\n", oid, tok, i, i % 5, ts, ts > jsonl
            printf "bench\t%s\tios\t%s\t{user%d}\t%d\tAsia/Shanghai\tcom.example.app\t\\N\t{}\t%s\t%s\n", oid, tok, i, i % 5, ts, ts > copy
        } else {
            tok = sprintf("fcm-%d:APA91b%064x", i, i * 7)
            printf "{\"objectId\":\"%s\",\"deviceType\":\"android\",\"vendor\":\"fcm\",\"registrationId\":\"%s\",\"installationId\":\"%032x\",\"channels\":[\"user%d\"],\"timeZone\":\"Asia/Shanghai\",\"createdAt\":\"%s\",\"updatedAt\":\"%s\"}\n", oid, tok, i, i, ts, ts > jsonl
            printf "bench\t%s\tandroid\t%s\t{user%d}\t0\tAsia/Shanghai\t\\N\tfcm\t{}\t%s\t%s\n", oid, tok, i, ts, ts > copy
        }
    }
}' || die "could not generate the rows"

for d in "${dbs[@]}"; do
    psql_on postgres -c "DROP DATABASE IF EXISTS $d" -c "CREATE DATABASE $d" >/dev/null
    printf '[database]\nurl = %s dbname=%s\nmigrations_dir = %s/migrations\n[app:bench]\nhook_key = bench-hook-key-0123456789\n' \
        "$conninfo" "$d" "$root" >"$work/$d.ini"
    "$pushgw" migrate -c "$work/$d.ini" >"$work/$d.migrate.log" 2>&1 \
        || { cat "$work/$d.migrate.log" >&2; die "migrate failed"; }
done

# COPY, import, import, COPY: on a shared machine the load drifts over
# the minutes a run takes, and one of each in a row can compare a quiet
# minute with a busy one. In this order a steady drift weighs on both
# alike; each rate is over the sum of its two timings, every round into
# an empty table (TRUNCATE between rounds).
run_copy() {
    psql_on pgw_bench_copy -c "TRUNCATE installations"
    local t0 t1
    t0=$(now_ms)
    psql_on pgw_bench_copy -c "COPY installations (app_id, object_id, device_type,
        device_token, channels, badge, time_zone, apns_topic, vendor, extra,
        created_at, updated_at) FROM STDIN" <"$work/import.copy"
    t1=$(now_ms)
    [ "$(psql_on pgw_bench_copy -Atc "SELECT count(*) FROM installations")" = "$rows" ] \
        || die "COPY did not write $rows rows"
    echo "    COPY: $(((t1 - t0) / 1000)).$(((t1 - t0) % 1000 / 100)) s" >&2
    copy_ms=$((copy_ms + t1 - t0))
}
run_import() {
    psql_on pgw_bench_import -c "TRUNCATE installations"
    local t0 t1
    t0=$(now_ms)
    "$pushgw" import -c "$work/pgw_bench_import.ini" --app bench "$work/import.jsonl" \
        >"$work/import.out" 2>&1 || { tail -5 "$work/import.out" >&2; die "pushgw import failed"; }
    t1=$(now_ms)
    grep -q "$rows rows in 1 file: $rows created, 0 updated, 0 unchanged, 0 skipped" "$work/import.out" \
        || { tail -5 "$work/import.out" >&2; die "pushgw import did not create every row"; }
    [ "$(psql_on pgw_bench_import -Atc "SELECT count(*) FROM installations")" = "$rows" ] \
        || die "pushgw import did not write $rows rows"
    echo "    pushgw import: $(((t1 - t0) / 1000)).$(((t1 - t0) % 1000 / 100)) s" >&2
    import_ms=$((import_ms + t1 - t0))
}
copy_ms=0
import_ms=0
log "import: COPY, pushgw import, pushgw import, COPY of the same rows"
run_copy
run_import
run_import
run_copy

copy_ms=$((copy_ms > 0 ? copy_ms : 1))
import_ms=$((import_ms > 0 ? import_ms : 1))
copy_rps=$((2 * rows * 1000 / copy_ms))
import_rps=$((2 * rows * 1000 / import_ms))
ratio=$(awk -v a="$import_rps" -v b="$copy_rps" 'BEGIN { printf "%.2f", a / b }')
printf '  import of %s rows, twice each: pushgw import %.1f s, COPY %.1f s in all\n' "$rows" \
    "$(awk -v m="$import_ms" 'BEGIN { print m / 1000 }')" \
    "$(awk -v m="$copy_ms" 'BEGIN { print m / 1000 }')" >&2
echo "bench import rows_per_s=$import_rps copy_rows_per_s=$copy_rps ratio=$ratio rows=$rows"
