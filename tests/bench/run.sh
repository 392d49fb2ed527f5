#!/usr/bin/env bash
# The benchmark of DESIGN §13 (docs/BENCHMARKS.md says how to read it).
#
#   tests/bench/run.sh [--quick] [--runs N] [--build DIR] [--keep] [--serve]
#                      [--distance] [--broadcast]
#
# Builds a Release pushgw, starts a private Postgres (fsync on: it is a
# durability benchmark), the C mock APNs and FCM (no per-request logging,
# no record file except in the latency runs), seeds the installations,
# starts `pushgw serve` and drives it through its real webhook API with
# tests/bench/loadgen (keep-alive HTTP/1.1, many requests in flight):
#   1. h2load against the same mock APNs: the HTTP/2 ceiling of this machine
#   2. fan-out: events of 1000 offline peers (70 % iOS, 30 % Android)
#   3. 1:1 chat: one peer, one device per event, then the Postgres ceiling:
#      pgbench on the same server, 64-row INSERT transactions of chat events
#      into a copy of the events table (pg_ratio = chat events/s over its
#      rows/s) and into a table with only a primary key
#   4. latency of each scenario at full rate and at half the measured rate
#      (mocks recording ts_ms per request, matched to the 202 of the event)
#   5. RSS with 1,000,000 pushes pending (mocks answering after 60 s)
#   6. distance: the same fan-out, default config, with the mocks 50 and
#      150 ms away (a network namespace behind netem, tests/bench/distance.sh)
#      against 0 ms on the same path (measured before and after them, the
#      mean); --distance measures only this
#   7. broadcast: a push-API request to a channel of many devices with 1:1
#      chat beside it (tests/bench/broadcast.sh), against the fan-out
#      figure of 2 in the same run; --broadcast measures only 2 and this
#   and, when node and npm are there, @parse/node-apn against the same mock
#   as a peer figure (BENCH_NODE_APN=0 skips it)
# then prints the two lines of §13. --runs N measures 1 to 4 N times in the
# same setup and reports the medians (each ratio is one run's pushes/s over
# that run's ceiling), with every run's lines and the ranges on stderr: the
# machine is shared and one run is noisy. Everything runs on loopback and stops
# by itself; --keep leaves the work folder (logs) in place; --serve only
# sets everything up and keeps pushgw serving (for profiling) until the
# file 'serving' in the work folder is removed.
#
# Environment (defaults in brackets): BENCH_FANOUT_EVENTS [100, quick 20],
# BENCH_CHAT_EVENTS [50000, quick 20000], BENCH_APNS_CONNS [2],
# BENCH_FCM_CONNS [2], BENCH_APNS_MAX_CONNS and BENCH_FCM_MAX_CONNS
# (the pools' max_connections) [pushgw's defaults], BENCH_DB_POOL [4], BENCH_IMPORT_ROWS [1000000,
# quick 100000; 0 = skipped], BENCH_BROADCAST_DEVICES [1000000, quick
# 200000; 0 = skipped: tests/bench/broadcast.sh], BENCH_CONNS (loadgen
# connections) [256], BENCH_PENDING_EVENTS [1000, quick 0 = skipped],
# BENCH_PG_OPTS (more postgres -c options, e.g. for pg_stat_statements) [],
# BENCH_PG_CLIENTS (pgbench clients of the Postgres ceiling) [BENCH_DB_POOL],
# BENCH_DISTANCE_EVENTS [400, quick 200; 0 = skipped], BENCH_DISTANCE_RTTS
# ["50 150"], BENCH_DISTANCE_NETEM [1; 0 = the mocks' --delay-ms instead].
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/bench/ceiling.sh"
. "$root/tests/bench/distance.sh"
quick=0
keep=0
serve=0
distance_only=0
broadcast_only=0
runs=1
build="$root/build-bench"
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --keep) keep=1 ;;
    --serve) serve=1 ;;
    --distance) distance_only=1 ;;
    --broadcast) broadcast_only=1 ;;
    --build) build=$2; shift ;;
    --runs) runs=${2:-}; shift ;;
    *) echo "usage: tests/bench/run.sh [--quick] [--runs N] [--build DIR] [--keep] [--serve] [--distance] [--broadcast]" >&2; exit 2 ;;
    esac
    shift
done
case "$runs" in
'' | *[!0-9]* | 0*) echo "tests/bench/run.sh: --runs wants a number from 1" >&2; exit 2 ;;
esac
# pushgw resolves the certificate paths of its config from its own
# working folder: a relative --build would not be found there
build=$(realpath -m "$build")

if [ $quick = 1 ]; then
    fanout_events=${BENCH_FANOUT_EVENTS:-20}
    chat_events=${BENCH_CHAT_EVENTS:-20000}
    ceiling_n=50000
    pending_events=${BENCH_PENDING_EVENTS:-0}
    import_rows=${BENCH_IMPORT_ROWS:-100000}
    broadcast_devices=${BENCH_BROADCAST_DEVICES:-200000}
    lat_fanout_events=10
    lat_chat_events=3000
    distance_events=${BENCH_DISTANCE_EVENTS:-200}
else
    fanout_events=${BENCH_FANOUT_EVENTS:-100}
    chat_events=${BENCH_CHAT_EVENTS:-50000}
    ceiling_n=300000
    pending_events=${BENCH_PENDING_EVENTS:-1000}
    import_rows=${BENCH_IMPORT_ROWS:-1000000}
    broadcast_devices=${BENCH_BROADCAST_DEVICES:-1000000}
    lat_fanout_events=40
    lat_chat_events=20000
    distance_events=${BENCH_DISTANCE_EVENTS:-400}
fi
apns_conns=${BENCH_APNS_CONNS:-2}
fcm_conns=${BENCH_FCM_CONNS:-2}
db_pool=${BENCH_DB_POOL:-4}
# loadgen keeps one request in flight per connection: a closed loop whose
# rate is connections / latency. With 64 the intake's latency (a durable
# commit per batch on a busy machine) was the limit while a third of the
# CPU was idle; 256 in flight, as a broker's many webhook calls would be,
# measure the gateway instead (docs/BENCHMARKS.md gives both).
lg_conns=${BENCH_CONNS:-256}
groups=4
chat_peers=10000

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'tests/bench/run.sh: %s\n' "$*" >&2; exit 1; }

# --- build ----------------------------------------------------------------
command -v h2load >/dev/null || die "h2load not found (apt-get install nghttp2-client)"
command -v psql >/dev/null || die "psql not found (apt-get install postgresql)"
log "building a Release binary in $build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >"/tmp/pushgw-bench-cmake.log" 2>&1 \
    || { cat /tmp/pushgw-bench-cmake.log; die "cmake failed"; }
cmake --build "$build" -j2 --target pushgw mock_apns mock_fcm mkjwt loadgen netdelay test_certs \
    >"/tmp/pushgw-bench-build.log" 2>&1 \
    || { tail -40 /tmp/pushgw-bench-build.log; die "build failed"; }
certs="$build/tests/certs/out"
pushgw="$build/pushgw"
mock_apns="$build/tests/mock/mock_apns"
mock_fcm="$build/tests/mock/mock_fcm"
loadgen="$build/tests/bench/loadgen"

# --- work folder, cleanup -------------------------------------------------
work=$(mktemp -d /tmp/pushgw-bench.XXXXXX)
chmod 755 "$work"
pids=()
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pgbin/initdb" ] || die "no PostgreSQL server binaries"
as_pg() { "$@"; }
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$work/pg"
    chown postgres: "$work/pg"
    as_pg() { runuser -u postgres -- "$@"; }
else
    mkdir -p "$work/pg"
fi
stop_pid() { # pid
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 1 200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
    kill -9 "$1" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do stop_pid "$p"; done
    dist_teardown
    if [ -f "$work/pg/data/postmaster.pid" ]; then
        as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ $keep = 1 ]; then echo "work folder kept: $work" >&2; else rm -rf "$work"; fi
    exit $rc
}
trap cleanup EXIT INT TERM

# A TCP port nothing uses now, from the ephemeral range's neighbourhood
# (ss is in iproute2, which deploy/packages.sh installs; no python).
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 30000))
        ss -Htan "( sport = :$p )" | grep -q . || { echo "$p"; return; }
    done
}

# --- Postgres -------------------------------------------------------------
pgport=$(free_port)
log "starting a private PostgreSQL (fsync on, synchronous_commit on) on port $pgport"
as_pg "$pgbin/initdb" -D "$work/pg/data" -U postgres --auth=trust --no-instructions \
    -E UTF8 --locale=C >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; die "initdb failed"; }
# Durable: fsync and synchronous_commit stay on. Sized for the benchmark:
# shared_buffers holds the tables, a larger WAL avoids checkpoints in a run.
as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/postgres.log" -w -o \
    "-k $work/pg -c listen_addresses=127.0.0.1 -p $pgport -c fsync=on -c synchronous_commit=on \
     -c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=30min \
     -c max_connections=50 ${BENCH_PG_OPTS:-}" start >/dev/null || { cat "$work/pg/postgres.log"; die "postgres did not start"; }
db="host=127.0.0.1 port=$pgport user=postgres dbname=postgres"
psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$db" "$@"; }

# --- mocks ----------------------------------------------------------------
apns_port=$(free_port)
fcm_port=$(free_port)
apns_pid=
fcm_pid=
start_mocks() { # extra args for both (e.g. --record FILE is per mock)
    local apns_extra=() fcm_extra=()
    if [ -n "${1:-}" ]; then apns_extra+=(--record "$1.apns.jsonl"); fcm_extra+=(--record "$1.fcm.jsonl"); fi
    if [ -n "${2:-}" ]; then apns_extra+=(--delay-ms "$2"); fcm_extra+=(--delay-ms "$2"); fi
    "$mock_apns" --listen "127.0.0.1:$apns_port" --quiet --cert "$certs/server.pem" \
        --key "$certs/server.key" --topic com.example.demo \
        --team "TEAM000001:KEY0000001:$certs/AuthKey_KEY0000001.pub.pem" \
        "${apns_extra[@]}" 2>>"$work/mock_apns.log" &
    apns_pid=$!
    "$mock_fcm" --listen "127.0.0.1:$fcm_port" --quiet --cert "$certs/server.pem" \
        --key "$certs/server.key" --service-account-pub "$certs/fcm-sa.pub.pem" \
        --client-email pushgw@pushgw-test.iam.gserviceaccount.com --project pushgw-test \
        "${fcm_extra[@]}" 2>>"$work/mock_fcm.log" &
    fcm_pid=$!
    pids+=("$apns_pid" "$fcm_pid")
    for _ in $(seq 1 200); do
        if curl -sk --http2 -o /dev/null "https://127.0.0.1:$apns_port/_mock/stats" &&
           curl -sk --http2 -o /dev/null "https://127.0.0.1:$fcm_port/_mock/stats"; then
            return 0
        fi
        sleep 0.05
    done
    die "the mocks did not start (see $work/mock_*.log)"
}
stop_mocks() { stop_pid "$apns_pid"; stop_pid "$fcm_pid"; }
mock_requests() { # port
    curl -sk --http2 "https://127.0.0.1:$1/_mock/stats" | sed -n 's/.*"requests":\([0-9]*\).*/\1/p'
}

# --- pushgw -----------------------------------------------------------------
gw_port=$(free_port)
admin_port=$(free_port)
mkdir -p "$work/templates"
cp "$root/templates/default.json" "$work/templates/"
cat >"$work/pushgw.ini" <<EOF
[server]
listen = 127.0.0.1:$gw_port
admin_listen = 127.0.0.1:$admin_port
max_peers_per_event = 1000
log_level = warn
shutdown_timeout_ms = 2000
[database]
url = $db
pool_size = $db_pool
migrations_dir = $root/migrations
[templates]
dir = $work/templates
[apns]
production_url = https://127.0.0.1:$apns_port
development_url = https://127.0.0.1:$apns_port
ca_file = $certs/ca.pem
connections = $apns_conns
${BENCH_APNS_MAX_CONNS:+max_connections = $BENCH_APNS_MAX_CONNS}
request_timeout_ms = 120000
[fcm]
url = https://127.0.0.1:$fcm_port
token_url = https://127.0.0.1:$fcm_port/token
ca_file = $certs/ca.pem
connections = $fcm_conns
${BENCH_FCM_MAX_CONNS:+max_connections = $BENCH_FCM_MAX_CONNS}
request_timeout_ms = 120000
[app:demo]
hook_key = demo-hook-key-0001
apns_topic = com.example.demo
apns_team_id = TEAM000001
apns_key_id = KEY0000001
apns_key_file = $certs/AuthKey_KEY0000001.p8
fcm_service_account_file = $certs/fcm-sa.json
EOF
"$pushgw" migrate -c "$work/pushgw.ini" >"$work/migrate.log" 2>&1 \
    || { cat "$work/migrate.log"; die "migrate failed"; }

gw_pid=
start_gw() { # [config file]
    "$pushgw" serve -c "${1:-$work/pushgw.ini}" 2>>"$work/pushgw.log" &
    gw_pid=$!
    pids+=("$gw_pid")
    for _ in $(seq 1 400); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin_port/readyz")" = 200 ] && return 0
        sleep 0.05
    done
    die "pushgw did not become ready (see $work/pushgw.log)"
}
stop_gw() { stop_pid "$gw_pid"; }
# A fresh pushgw opens its provider connections, fetches its FCM token and
# signs its first JWT with the first event: one fan-out event (no "seq",
# so no latency sample) before each measured run, then its row is gone.
# Without it the first event of a latency run took 36-49 ms against 9-18
# for the others, and alone made the p99 of 40 events.
warm_gw() {
    "$loadgen" send --port "$gw_port" --scenario fanout --events 1 --conns 1 \
        --groups "$groups" --no-seq --run-id "warm-$RANDOM$RANDOM" >/dev/null \
        || die "warm-up event not accepted"
    "$loadgen" wait --db "$db" --events 1 --timeout-s 60 >/dev/null || die "warm-up event not done"
    psql_q -c "TRUNCATE events, push_retries, push_failures"
}
gw_mem() { # field of /proc/PID/status, in MiB
    awk -v f="$1:" '$1 == f { printf "%.0f", $2 / 1024 }' "/proc/$gw_pid/status"
}
reset_db() {
    psql_q -c "TRUNCATE events, push_retries, push_failures" \
        -c "UPDATE installations SET badge = 0" -c "VACUUM ANALYZE"
}

# --- seed -------------------------------------------------------------------
log "seeding installations: $groups fan-out groups of 1000 peers, $chat_peers chat peers (70 % iOS)"
psql_q <<EOF
INSERT INTO installations (app_id, device_type, device_token, channels)
SELECT 'demo', CASE WHEN i % 10 < 7 THEN 'ios' ELSE 'android' END,
       CASE WHEN i % 10 < 7 THEN lpad(to_hex(1000000 + g * 1000 + i), 64, '0')
            ELSE 'fcm-f' || g || '-' || i END,
       ARRAY['f' || g || '_' || i]
FROM generate_series(0, $groups - 1) g, generate_series(0, 999) i;
INSERT INTO installations (app_id, device_type, device_token, channels)
SELECT 'demo', CASE WHEN i % 10 < 7 THEN 'ios' ELSE 'android' END,
       CASE WHEN i % 10 < 7 THEN lpad(to_hex(50000000 + i), 64, '0')
            ELSE 'fcm-c-' || i END,
       ARRAY['c' || i]
FROM generate_series(0, $chat_peers - 1) i;
VACUUM ANALYZE;
EOF

# --- 6. distance ------------------------------------------------------------------
# The fan-out of 2 with the mocks in a namespace |rtt| ms away (or their
# --delay-ms: tests/bench/distance.sh), the default pool settings; pushgw
# as in 2. Sets D_PPS and D_CONNS (the APNs and FCM connections ready at
# the end of the run).
run_distance_one() { # rtt
    local out wout m
    dist_rtt "$1" || die "tc could not set a delay of $1 ms"
    dist_start_mocks "$mock_apns" "$mock_fcm" "$far_apns_port" "$far_fcm_port" \
        || die "the far mocks did not start (see $work/mock_*_far.log)"
    reset_db
    start_gw "$work/pushgw-far.ini"
    warm_gw
    local st0 io0 other0 sys0
    st0=$(gw_cpu_ticks)
    io0=$(gw_syscalls)
    other0=$(dist_other_ticks)
    sys0=$(sys_busy_ticks)
    out=$("$loadgen" send --port "$gw_port" --scenario fanout --events "$distance_events" \
        --conns "$lg_conns" --groups "$groups" --run-id "far$1-$RANDOM$RANDOM") \
        || die "loadgen failed: $out"
    wout=$("$loadgen" wait --db "$db" --events "$distance_events" --timeout-s 600) \
        || die "events not done: $wout"
    # pushgw's own cost per push in this step, to compare near and far
    # (docs/BENCHMARKS.md, Distance): CPU-seconds, read and write calls
    echo "    rtt ${1} ms: pushgw cpu_s=$(awk -v a="$st0" -v b="$(gw_cpu_ticks)" -v t="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.2f", (b - a) / t }') syscalls(read write) $io0 -> $(gw_syscalls)" >&2
    # and the others' on the same two cores: the mocks, netdelay (its
    # system calls, and the TCP receive work the kernel does in its
    # writes), the machine as a whole (busy CPU-seconds of all cores)
    echo "    rtt ${1} ms: cpu_s mocks,netdelay $(dist_other_ticks | awk -v o="$other0" -v t="$(getconf CLK_TCK)" \
        '{ split(o, a, " "); printf "%.2f,%.2f", ($1 - a[1]) / t, ($2 - a[2]) / t }')" \
        "machine busy $(sys_busy_ticks | awk -v a="$sys0" -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($1 - a) / t }')" >&2
    m=$(curl -s "http://127.0.0.1:$admin_port/metrics")
    D_HWM=$(gw_mem VmHWM)
    D_CONNS=$(echo "$m" | sed -n 's/^pushgw_provider_connections{provider="\([a-z]*\)",state="ready"} \([0-9]*\).*/\1=\2/p' | tr '\n' ' ')
    stop_gw
    dist_stop_mocks
    D_PPS=$(echo "$wout" | sed -n 's/.*pushes_per_s=\([0-9]*\).*/\1/p')
    echo "    rtt ${1} ms: $wout; connections ready at the end: $D_CONNS; pushgw VmHWM ${D_HWM} MiB" >&2
}
gw_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$gw_pid/stat"; }
pid_ticks() { [ -n "$1" ] && awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
dist_other_ticks() {
    echo "$(($(pid_ticks "$DIST_APNS_PID") + $(pid_ticks "$DIST_FCM_PID"))) $(pid_ticks "$DIST_TUN_PID")"
}
sys_busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
gw_syscalls() { awk '$1 == "syscr:" || $1 == "syscw:" { printf "%s ", $2 }' "/proc/$gw_pid/io"; }
distance_lines=()
run_distance() {
    local near near1 near2 rtt d_pps conns f far
    [ "$distance_events" -gt 0 ] || { distance_lines=("bench distance skipped"); return 0; }
    dist_setup "$work" "$certs" "$build/tests/bench/netdelay"
    far_apns_port=$(free_port)
    far_fcm_port=$(free_port)
    sed -e "s|https://127.0.0.1:$apns_port|https://$DIST_HOST:$far_apns_port|g" \
        -e "s|https://127.0.0.1:$fcm_port|https://$DIST_HOST:$far_fcm_port|g" \
        "$work/pushgw.ini" >"$work/pushgw-far.ini"
    chmod 600 "$work/pushgw-far.ini"
    log "distance ($DIST_MODE): fan-out of $distance_events events x 1000 peers at 0 ms" \
        "(load average $(cut -d' ' -f1-3 /proc/loadavg))"
    run_distance_one 0
    near1=$D_PPS
    far=()
    for rtt in ${BENCH_DISTANCE_RTTS:-50 150}; do
        log "distance ($DIST_MODE): the same at $rtt ms"
        run_distance_one "$rtt"
        far+=("$rtt $D_PPS $(echo "$D_CONNS" | sed 's/ *$//; s/ /,/g')")
    done
    # The 0 ms step again after the far ones: the ratios divide by the
    # mean of both, so a moment of more or less load from elsewhere
    # during one near step moves them less.
    log "distance ($DIST_MODE): 0 ms again"
    run_distance_one 0
    near2=$D_PPS
    near=$(((near1 + near2) / 2))
    for f in "${far[@]}"; do
        read -r rtt d_pps conns <<<"$f"
        distance_lines+=("bench distance rtt_ms=$rtt pushes_per_s=$d_pps near_pushes_per_s=$near ratio=$(awk -v a="$d_pps" -v b="$near" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }') via=$DIST_MODE conns=$conns near_each=$near1/$near2")
    done
    dist_teardown
}

start_mocks
if [ $distance_only = 1 ]; then
    run_distance
    echo
    echo "pushgw distance benchmark ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
    printf '%s\n' "${distance_lines[@]}"
    exit 0
fi
if [ $serve = 1 ]; then
    # For profiling: everything up, pushgw serving (it may be stopped and
    # started again by hand) until the file $work/serving is removed.
    start_gw
    touch "$work/serving"
    echo "serving: gw_port=$gw_port db='$db' work=$work gw_pid=$gw_pid" \
         "apns_pid=$apns_pid fcm_pid=$fcm_pid loadgen=$loadgen" >&2
    while [ -e "$work/serving" ]; do sleep 1; done
    exit 0
fi

# --- 1b. the peer figure (optional) -------------------------------------------
# @parse/node-apn (npm, pinned in tests/bench/node-apn) against the same mock:
# a popular Node.js APNs client as a yardstick. Skipped without node/npm or
# the registry, or with BENCH_NODE_APN=0.
peer_pps=skipped
if [ $broadcast_only = 0 ] && [ "${BENCH_NODE_APN:-1}" != 0 ] && command -v node >/dev/null && command -v npm >/dev/null; then
    log "peer figure: @parse/node-apn against the mock APNs"
    mkdir -p "$work/node-apn"
    cp "$root/tests/bench/node-apn/package.json" "$root/tests/bench/node-apn/package-lock.json" \
       "$root/tests/bench/node-apn/peer.js" "$work/node-apn/"
    if (cd "$work/node-apn" && timeout 180 npm ci --no-audit --no-fund >"$work/npm.log" 2>&1); then
        peer_out=$(cd "$work/node-apn" && timeout 300 node peer.js "$apns_port" \
            "$certs/AuthKey_KEY0000001.p8" "$certs/ca.pem" $((ceiling_n / 3)) 500 4) || peer_out=
        echo "    ${peer_out:-node-apn run failed}" >&2
        peer_pps=$(echo "$peer_out" | sed -n 's/.*pushes_per_s=\([0-9]*\).*/\1/p')
        [ -n "$peer_pps" ] || peer_pps=failed
    else
        echo "    npm ci failed (no registry?): peer figure skipped (see $work/npm.log)" >&2
    fi
fi

# One throughput run: fresh pushgw, events through loadgen, wait for the
# end, rates from the events table. Sets T_EPS T_PPS T_RSS T_429.
run_throughput() { # scenario events
    local sc=$1 n=$2 out wout
    reset_db
    start_gw
    warm_gw
    out=$("$loadgen" send --port "$gw_port" --scenario "$sc" --events "$n" \
        --conns "$lg_conns" --groups "$groups" --chat-peers "$chat_peers" \
        --run-id "$sc-$RANDOM$RANDOM") || die "loadgen failed: $out"
    echo "    $out" >&2
    wout=$("$loadgen" wait --db "$db" --events "$n" --timeout-s 600) || die "events not done: $wout"
    echo "    $wout" >&2
    T_RSS=$(gw_mem VmHWM)
    stop_gw
    T_EPS=$(echo "$wout" | sed -n 's/.*events_per_s=\([0-9]*\).*/\1/p')
    T_PPS=$(echo "$wout" | sed -n 's/.*pushes_per_s=\([0-9]*\).*/\1/p')
    T_429=$(echo "$out" | sed -n 's/.*rejected=\([0-9]*\).*/\1/p')
}

# The Postgres ceiling: pgbench on the same server as the chat run (fsync
# and synchronous_commit on), transactions of one 64-row INSERT of chat
# events (a body as long as loadgen's, distinct msgIds) with as many
# clients as pushgw's pool has connections. Into two tables: a copy of
# events (LIKE events INCLUDING ALL: its columns, defaults, checks and four
# indexes, what pushgw's intake writes) is the ceiling of the line; one
# with the same columns and only a primary key is printed beside it (what
# Postgres takes when nothing but the row is indexed). Sets T_PGC and
# T_PGK (rows/s).
pgc_clients=${BENCH_PG_CLIENTS:-$db_pool}
pgc_secs=$([ $quick = 1 ] && echo 5 || echo 10)
pg_ceiling_one() { # table
    local out tps
    printf '%s\n' "INSERT INTO $1 (app_id, conv_id, msg_id, body, event_ts_ms)" \
        "SELECT 'demo', 'chat-' || (i * 157 + :client_id) % 10000," \
        "  'ceiling-' || :client_id || '-' || nextval('bench_ceiling_seq'), '$pgc_body', $(date +%s%3N)" \
        "FROM generate_series(1, 64) i;" >"$work/$1.sql"
    out=$("$pgbin/pgbench" -n -M prepared -c "$pgc_clients" -j 2 -T "$pgc_secs" \
        -f "$work/$1.sql" "$db" 2>&1) || die "pgbench failed: $out"
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
    [ -n "$tps" ] || die "pgbench gave no figure: $out"
    echo "    pgbench $1 -c $pgc_clients -j 2 -T $pgc_secs -M prepared: $tps tps x 64 rows" >&2
    awk -v t="$tps" 'BEGIN { printf "%.0f", t * 64 }'
}
run_pg_ceiling() {
    # a chat event's JSON as loadgen sends it, to the byte
    pgc_body=$(printf '{"fromPeer":"bench","convId":"chat-1234","offlinePeers":["c1234"],"timestamp":%s,"content":"hello","msgId":"chat-1234567890-12345","pushData":{"alert":"hello from the benchmark","badge":"Increment","seq":"12345"}}' \
        "$(date +%s%3N)")
    psql_q -c "SET client_min_messages = warning" \
        -c "DROP TABLE IF EXISTS bench_ceiling_ev, bench_ceiling_pk" \
        -c "DROP SEQUENCE IF EXISTS bench_ceiling_seq" -c "CREATE SEQUENCE bench_ceiling_seq" \
        -c "CREATE TABLE bench_ceiling_ev (LIKE events INCLUDING ALL)" \
        -c "CREATE TABLE bench_ceiling_pk (id bigserial PRIMARY KEY, app_id text NOT NULL,
            conv_id text NOT NULL, msg_id text, body text NOT NULL, event_ts_ms bigint NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now())"
    T_PGC=$(pg_ceiling_one bench_ceiling_ev)
    T_PGK=$(pg_ceiling_one bench_ceiling_pk)
    echo "    Postgres ceiling: $T_PGC rows/s into a copy of events, $T_PGK into a primary key only" >&2
    psql_q -c "DROP TABLE bench_ceiling_ev, bench_ceiling_pk" -c "DROP SEQUENCE bench_ceiling_seq" \
        -c "CHECKPOINT"
}

# One latency run: mocks recording, events at |rate| (0: full), p50/p99 of
# accept → provider request. Sets L_P50 L_P99.
run_latency() { # scenario events rate tag
    local sc=$1 n=$2 rate=$3 tag=$4 out lat
    stop_mocks
    rm -f "$work/$tag".*.jsonl
    start_mocks "$work/$tag"
    reset_db
    start_gw
    warm_gw
    out=$("$loadgen" send --port "$gw_port" --scenario "$sc" --events "$n" \
        --conns "$lg_conns" --groups "$groups" --chat-peers "$chat_peers" \
        --rate "$rate" --accept-log "$work/$tag.accept" \
        --run-id "$tag-$RANDOM$RANDOM") || die "loadgen failed: $out"
    echo "    $out" >&2
    "$loadgen" wait --db "$db" --events "$n" --timeout-s 600 >/dev/null || die "events not done"
    stop_gw
    stop_mocks
    lat=$("$loadgen" latency --accept-log "$work/$tag.accept" \
        "$work/$tag.apns.jsonl" "$work/$tag.fcm.jsonl") || die "no latency samples"
    echo "    $lat" >&2
    rm -f "$work/$tag".*.jsonl
    start_mocks
    L_P50=$(echo "$lat" | sed -n 's/.* p50_ms=\([0-9.]*\).*/\1/p')
    L_P99=$(echo "$lat" | sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p')
}

if [ $broadcast_only = 1 ]; then
    log "fan-out: $fanout_events events x 1000 peers ($((fanout_events * 1000)) pushes)"
    run_throughput fanout "$fanout_events"
    . "$root/tests/bench/broadcast.sh"
    run_broadcast "$broadcast_devices" "$T_PPS"
    echo
    echo "pushgw broadcast benchmark ($(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg))"
    echo "bench fanout pushes_per_s=$T_PPS rss_mib=$T_RSS"
    echo "$B_LINE"
    exit 0
fi

# --- 1 to 4, |runs| times ----------------------------------------------------
printf '%s' '{"aps":{"alert":"hello from the benchmark","badge":1},"seq":"1"}' >"$work/body.json"
R_CEIL=() R_FPPS=() R_FEPS=() R_FRSS=() R_F429=() R_RATIO=()
R_FP50F=() R_FP99F=() R_FP50=() R_FP99=()
R_CEPS=() R_CPPS=() R_CRSS=() R_C429=() R_CP50F=() R_CP99F=() R_CP50=() R_CP99=()
R_PGC=() R_PGR=() R_PGK=() R_PGKR=()
for ((run = 1; run <= runs; run++)); do
    [ "$runs" -gt 1 ] && log "run $run of $runs"
    log "h2load ceiling: -n $ceiling_n -c $apns_conns -m 1000 against the mock APNs"
    ceiling=$(h2load_ceiling "$build" "https://127.0.0.1:$apns_port" "$ceiling_n" "$apns_conns" \
        com.example.demo "$work/body.json") || die "h2load gave no figure"

    # --- 2, 3. throughput -------------------------------------------------------
    log "fan-out: $fanout_events events x 1000 peers ($((fanout_events * 1000)) pushes)"
    run_throughput fanout "$fanout_events"
    f_eps=$T_EPS f_pps=$T_PPS f_rss=$T_RSS f_429=$T_429
    log "chat: $chat_events events, one device each"
    run_throughput chat "$chat_events"
    c_eps=$T_EPS c_pps=$T_PPS c_rss=$T_RSS c_429=$T_429
    log "Postgres ceiling: pgbench, 64-row INSERT transactions of chat events, $pgc_clients clients"
    run_pg_ceiling
    pgc=$T_PGC pgk=$T_PGK

    # --- 4. latency ---------------------------------------------------------------
    log "fan-out latency at full rate ($lat_fanout_events events)"
    run_latency fanout "$lat_fanout_events" 0 lat-fanout-full
    f_p50_full=$L_P50 f_p99_full=$L_P99
    f_half=$(awk -v e="$f_eps" 'BEGIN { r = e / 2; if (r < 1) r = 1; printf "%.2f", r }')
    log "fan-out latency at half rate ($f_half events/s)"
    run_latency fanout "$lat_fanout_events" "$f_half" lat-fanout-half
    f_p50=$L_P50 f_p99=$L_P99
    log "chat latency at full rate ($lat_chat_events events)"
    run_latency chat "$lat_chat_events" 0 lat-chat-full
    c_p50_full=$L_P50 c_p99_full=$L_P99
    c_half=$((c_eps / 2))
    log "chat latency at half rate ($c_half events/s)"
    run_latency chat "$lat_chat_events" "$c_half" lat-chat-half
    c_p50=$L_P50 c_p99=$L_P99

    ratio=$(awk -v a="$f_pps" -v b="$ceiling" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    R_CEIL+=("$ceiling") R_FPPS+=("$f_pps") R_FEPS+=("$f_eps") R_FRSS+=("$f_rss")
    R_F429+=("$f_429") R_RATIO+=("$ratio") R_FP50F+=("$f_p50_full")
    R_FP99F+=("$f_p99_full") R_FP50+=("$f_p50") R_FP99+=("$f_p99")
    pg_ratio=$(awk -v a="$c_eps" -v b="$pgc" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
    R_CEPS+=("$c_eps") R_CPPS+=("$c_pps") R_CRSS+=("$c_rss") R_C429+=("$c_429")
    pgk_ratio=$(awk -v a="$c_eps" -v b="$pgk" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
    R_PGC+=("$pgc") R_PGR+=("$pg_ratio") R_PGK+=("$pgk") R_PGKR+=("$pgk_ratio")
    R_CP50F+=("$c_p50_full") R_CP99F+=("$c_p99_full") R_CP50+=("$c_p50") R_CP99+=("$c_p99")
    if [ "$runs" -gt 1 ]; then
        echo "    run $run: bench fanout pushes_per_s=$f_pps ceiling_per_s=$ceiling ratio=$ratio p99_ms=$f_p99 rss_mib=$f_rss" >&2
        echo "    run $run: bench chat events_per_s=$c_eps pushes_per_s=$c_pps p99_ms=$c_p99 rss_mib=$c_rss pg_ceiling_per_s=$pgc pg_ratio=$pg_ratio" >&2
    fi
done

# The median of the arguments, printed with format $1; "lo - hi" with
# range_of.
median_of() {
    local fmt=$1
    shift
    printf '%s\n' "$@" | sort -g | awk -v f="$fmt" '{ v[NR] = $1 }
        END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf f "\n", m }'
}
range_of() {
    printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo " - " hi }'
}
if [ "$runs" -gt 1 ]; then
    log "ranges over $runs runs: fan-out $(range_of "${R_FPPS[@]}") pushes/s," \
        "ceiling $(range_of "${R_CEIL[@]}"), ratio $(range_of "${R_RATIO[@]}")," \
        "fan-out p99 $(range_of "${R_FP99[@]}") ms; chat $(range_of "${R_CEPS[@]}") events/s," \
        "chat p99 $(range_of "${R_CP99[@]}") ms; pg ceiling $(range_of "${R_PGC[@]}") rows/s," \
        "pg_ratio $(range_of "${R_PGR[@]}"); primary-key-only ceiling $(range_of "${R_PGK[@]}")," \
        "chat over it $(range_of "${R_PGKR[@]}")"
fi
ceiling=$(median_of %.0f "${R_CEIL[@]}")
f_pps=$(median_of %.0f "${R_FPPS[@]}") f_eps=$(median_of %.0f "${R_FEPS[@]}")
f_rss=$(median_of %.0f "${R_FRSS[@]}") f_429=$(median_of %.0f "${R_F429[@]}")
ratio=$(median_of %.2f "${R_RATIO[@]}")
f_p50_full=$(median_of %.1f "${R_FP50F[@]}") f_p99_full=$(median_of %.1f "${R_FP99F[@]}")
f_p50=$(median_of %.1f "${R_FP50[@]}") f_p99=$(median_of %.1f "${R_FP99[@]}")
c_eps=$(median_of %.0f "${R_CEPS[@]}") c_pps=$(median_of %.0f "${R_CPPS[@]}")
pgc=$(median_of %.0f "${R_PGC[@]}") pg_ratio=$(median_of %.2f "${R_PGR[@]}")
pgk=$(median_of %.0f "${R_PGK[@]}") pgk_ratio=$(median_of %.2f "${R_PGKR[@]}")
c_rss=$(median_of %.0f "${R_CRSS[@]}") c_429=$(median_of %.0f "${R_C429[@]}")
c_p50_full=$(median_of %.1f "${R_CP50F[@]}") c_p99_full=$(median_of %.1f "${R_CP99F[@]}")
c_p50=$(median_of %.1f "${R_CP50[@]}") c_p99=$(median_of %.1f "${R_CP99[@]}")

# --- 5. RSS with pushes pending ---------------------------------------------
p_rss=skipped
if [ "$pending_events" -gt 0 ]; then
    log "RSS with $((pending_events * 1000)) pushes pending (mocks answer after 60 s)"
    stop_mocks
    start_mocks "" 60000
    reset_db
    start_gw
    out=$("$loadgen" send --port "$gw_port" --scenario fanout --events "$pending_events" \
        --conns "$lg_conns" --groups "$groups" --run-id "pending-$RANDOM$RANDOM") \
        || die "loadgen failed: $out"
    echo "    $out" >&2
    sleep 3
    p_rss=$(gw_mem VmRSS)
    p_hwm=$(gw_mem VmHWM)
    open=$(psql_q -At -c "SELECT count(*) FROM events WHERE state <> 'done'")
    echo "    events not done: $open; VmRSS ${p_rss} MiB, VmHWM ${p_hwm} MiB" >&2
    stop_pid "$gw_pid"
    stop_mocks
    start_mocks
fi

# --- broadcast -------------------------------------------------------------------
# A push-API request to a channel of many devices, with chat events beside
# it (tests/bench/broadcast.sh); compared with the fan-out figure above.
broadcast_line="bench broadcast skipped"
if [ "$broadcast_devices" -gt 0 ]; then
    . "$root/tests/bench/broadcast.sh"
    run_broadcast "$broadcast_devices" "$f_pps"
    broadcast_line=$B_LINE
fi

# --- import ---------------------------------------------------------------------
# pushgw import against COPY of the same rows, in the same Postgres
# (tests/bench/import.sh; each in a database of its own).
import_line="bench import skipped"
if [ "$import_rows" -gt 0 ]; then
    import_line=$("$root/tests/bench/import.sh" "$pushgw" \
        "host=127.0.0.1 port=$pgport user=postgres" "$import_rows" "$work") \
        || die "the import benchmark failed"
fi

run_distance

# --- report -------------------------------------------------------------------
cat <<EOF

pushgw benchmark ($(nproc) cores, $(uname -r); Postgres fsync on, synchronous_commit on)$([ "$runs" -gt 1 ] && printf '\n  medians of %s runs (each run and the ranges above)' "$runs")
  h2load ceiling (mock APNs, -c $apns_conns -m 1000): $ceiling req/s
  fan-out ($fanout_events events x 1000 peers, 70 % iOS / 30 % Android):
    $f_pps pushes/s ($f_eps events/s), ratio to h2load $ratio, 429s $f_429
    latency accept -> provider request: full rate p50 $f_p50_full ms p99 $f_p99_full ms;
                                        half rate p50 $f_p50 ms p99 $f_p99 ms
    peak RSS (VmHWM) $f_rss MiB
  chat ($chat_events events, one device each):
    $c_eps events/s durably accepted and pushed ($c_pps pushes/s), 429s $c_429
    latency accept -> provider request: full rate p50 $c_p50_full ms p99 $c_p99_full ms;
                                        half rate p50 $c_p50 ms p99 $c_p99 ms
    peak RSS (VmHWM) $c_rss MiB
    Postgres ceiling (pgbench -c $pgc_clients, 64-row INSERT transactions of chat events):
      into a copy of events $pgc rows/s, chat over it (pg_ratio) $pg_ratio;
      into a table with only a primary key $pgk rows/s, chat over it $pgk_ratio
  RSS with $((pending_events * 1000)) pushes pending: $p_rss$([ "$p_rss" = skipped ] || echo " MiB")
  peer: @parse/node-apn (npm) against the same mock APNs: $peer_pps$(case $peer_pps in *[!0-9]*) ;; *) echo " pushes/s";; esac)
  targets: fan-out >= 100000 pushes/s and ratio >= 0.5; chat >= 20000 events/s;
           p99 < 20 ms at half rate; RSS < 64 MiB with 1,000,000 pushes pending;
           chat pg_ratio >= 0.25; import >= 0.5 x COPY of the same rows;
           broadcast >= 0.8 x fan-out, RSS < 100 MiB, chat p99 < 50 ms meanwhile

EOF
echo "bench fanout pushes_per_s=$f_pps ceiling_per_s=$ceiling ratio=$ratio p99_ms=$f_p99 rss_mib=$f_rss"
echo "bench chat events_per_s=$c_eps pushes_per_s=$c_pps p99_ms=$c_p99 rss_mib=$c_rss pg_ceiling_per_s=$pgc pg_ratio=$pg_ratio"
echo "$import_line"
printf '%s\n' "${distance_lines[@]}"
echo "$broadcast_line"
