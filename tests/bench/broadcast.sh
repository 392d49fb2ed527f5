# The broadcast scenario of DESIGN §13, sourced by tests/bench/run.sh (it
# uses run.sh's Postgres, mocks, loadgen and functions):
#
#   run_broadcast DEVICES FANOUT_PPS
#
# One push-API request (a row of api_pushes, as POST /1.1/push stores it)
# to a channel of DEVICES installations (70 % iOS, 30 % Android, badge
# "Increment"), sent by a fresh pushgw against the mocks, while loadgen
# posts 1:1 chat events at a steady rate through the webhook. Prints
#   bench broadcast devices=… pushes_per_s=… fanout_ratio=… rss_mib=… chat_p99_ms=…
# pushes_per_s: devices over the request's own sending time (started_at to
# finished_at in api_pushes); fanout_ratio: that over FANOUT_PPS, the
# fan-out figure of the same run; rss_mib: pushgw's VmHWM; chat_p99_ms: the
# p99 of the chat events' pushgw_push_latency_seconds (accepted → provider
# answer; API pushes are not observed there) over the broadcast, read from
# the histogram's buckets (linear within a bucket; 0.05 s is a bucket
# bound, so "< 50 ms" is exact).

# The p99 in ms of the latency histogram's growth between two /metrics
# texts (files), over both providers.
hist_p99_ms() { # before after
    awk '
        /^pushgw_push_latency_seconds_bucket/ {
            le = $0; sub(/.*le="/, "", le); sub(/".*/, "", le)
            v = $NF
            if (FILENAME == ARGV[1]) b[le] += v; else a[le] += v
            les[le] = 1
        }
        END {
            n = 0
            for (l in les) { keys[++n] = l }
            # sort the bounds numerically (+Inf last)
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) {
                x = keys[i] == "+Inf" ? 1e99 : keys[i] + 0
                y = keys[j] == "+Inf" ? 1e99 : keys[j] + 0
                if (y < x) { t = keys[i]; keys[i] = keys[j]; keys[j] = t }
            }
            total = a["+Inf"] - b["+Inf"]
            if (total <= 0) { print "none"; exit }
            want = total * 0.99; prev_c = 0; prev_le = 0
            for (i = 1; i <= n; i++) {
                c = a[keys[i]] - b[keys[i]]
                if (c >= want) {
                    if (keys[i] == "+Inf") { printf ">%.0f\n", prev_le * 1000; exit }
                    hi = keys[i] + 0
                    f = c > prev_c ? (want - prev_c) / (c - prev_c) : 1
                    printf "%.1f\n", (prev_le + (hi - prev_le) * f) * 1000
                    exit
                }
                prev_c = c; prev_le = keys[i] == "+Inf" ? prev_le : keys[i] + 0
            }
        }' "$1" "$2"
}

# CPU ticks (user + system) so far of pushgw, Postgres (the postmaster and
# its children: backends come and go, so those that ended in between are
# not counted), the two mocks, loadgen |lg| and the whole machine (all
# processes, every core), as "pushgw postgres mocks loadgen machine".
bc_cpu_ticks() { # loadgen pid
    local pm g=0 s=0 m=0 l=0 p
    pm=$(head -n 1 "$work/pg/data/postmaster.pid")
    ticks() {
        local f
        f=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
        f=${f##*) }
        # shellcheck disable=SC2086
        set -- $f
        echo $((${12} + ${13}))
    }
    g=$(ticks "$gw_pid")
    for p in "$pm" $(pgrep -P "$pm"); do s=$((s + $(ticks "$p"))); done
    m=$(($(ticks "$apns_pid") + $(ticks "$fcm_pid")))
    l=$(ticks "$1")
    echo "$g $s $m $l $(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat)"
}

# Read and write system calls so far (/proc/PID/io syscr, syscw) of
# pushgw, the mock APNs and the mock FCM: "gr gw ar aw fr fw".
bc_syscalls() {
    local p
    for p in "$gw_pid" "$apns_pid" "$fcm_pid"; do
        awk '/^syscr/ { r = $2 } /^syscw/ { w = $2 } END { printf "%d %d ", r, w }' "/proc/$p/io"
    done
    echo
}

run_broadcast() { # devices fanout_pps
    local n=$1 fpps=$2 id t0 t0_ms cpu0 cpu1 out st secs pps ratio rss p99 chat_n chat_rate lg_pid pgss perf_pids pp io0 io1
    log "broadcast: seeding a channel of $n devices"
    psql_q <<EOF
DELETE FROM installations WHERE channels = '{bcast}';
INSERT INTO installations (app_id, device_type, device_token, channels)
SELECT 'demo', CASE WHEN i % 10 < 7 THEN 'ios' ELSE 'android' END,
       CASE WHEN i % 10 < 7 THEN lpad(to_hex(200000000 + i), 64, '0')
            ELSE 'fcm-b-' || i END,
       '{bcast}'
FROM generate_series(1, $n) i;
TRUNCATE api_pushes CASCADE;
VACUUM ANALYZE installations;
EOF
    # run.sh's reset_db would rewrite every badge: the channel is fresh
    psql_q -c "TRUNCATE events, push_retries, push_failures"
    start_gw
    warm_gw
    # with BENCH_PG_OPTS="-c shared_preload_libraries=pg_stat_statements":
    # Postgres's statements during the broadcast
    pgss=0
    case "$(psql_q -At -c "SHOW shared_preload_libraries")" in
    *pg_stat_statements*)
        pgss=1
        psql_q -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
            -c "SELECT pg_stat_statements_reset()" >/dev/null ;;
    esac
    # The same chat alone first (5 s): the p99 the machine's load gives
    # without a broadcast, on stderr beside the line.
    curl -s "http://127.0.0.1:$admin_port/metrics" >"$work/bcast.alone.0"
    "$loadgen" send --port "$gw_port" --scenario chat --events 1000 \
        --conns 16 --groups "$groups" --chat-peers "$chat_peers" \
        --rate 200 --run-id "bcast-alone-$RANDOM$RANDOM" >/dev/null 2>&1 \
        || die "loadgen (chat before the broadcast) failed"
    "$loadgen" wait --db "$db" --events 1000 --timeout-s 60 >/dev/null \
        || die "chat before the broadcast: events not done"
    curl -s "http://127.0.0.1:$admin_port/metrics" >"$work/bcast.alone.1"
    echo "    chat alone before it, 200 events/s: p99 $(hist_p99_ms "$work/bcast.alone.0" "$work/bcast.alone.1") ms" >&2
    curl -s "http://127.0.0.1:$admin_port/metrics" >"$work/bcast.metrics.0"
    id=$(psql_q -At -c "INSERT INTO api_pushes (app_id, query, data, expires_at)
        VALUES ('demo', '{\"channels\":{\"\$in\":[\"bcast\"]}}',
        '{\"alert\":\"to everyone\",\"badge\":\"Increment\"}',
        now() + interval '1 day') RETURNING id")
    # 1:1 chat meanwhile: a steady 200 events/s, for about as long as the
    # broadcast should take at the fan-out rate.
    chat_rate=200
    chat_n=$(awk -v n="$n" -v p="$fpps" -v r="$chat_rate" \
        'BEGIN { s = p > 0 ? n / p : 10; if (s < 5) s = 5; printf "%d", s * r }')
    "$loadgen" send --port "$gw_port" --scenario chat --events "$chat_n" \
        --conns 16 --groups "$groups" --chat-peers "$chat_peers" \
        --rate "$chat_rate" --run-id "bcast-chat-$RANDOM$RANDOM" >"$work/bcast.chat" 2>&1 &
    lg_pid=$!
    t0=$(date +%s)
    # BENCH_PERF_DIR: a profile of each process while the broadcast runs
    # (perf record: pushgw, the mocks, Postgres's processes), one file each.
    perf_pids=()
    if [ -n "${BENCH_PERF_DIR:-}" ]; then
        mkdir -p "$BENCH_PERF_DIR"
        local pm pgp
        pm=$(head -n 1 "$work/pg/data/postmaster.pid")
        pgp=$(pgrep -d, -P "$pm")
        for pp in "gw:$gw_pid" "apns:$apns_pid" "fcm:$fcm_pid" "pg:$pgp"; do
            perf record -F 999 -g -p "${pp#*:}" -o "$BENCH_PERF_DIR/${pp%%:*}.data" \
                >/dev/null 2>&1 &
            perf_pids+=($!)
        done
    fi
    cpu0=$(bc_cpu_ticks "$lg_pid")
    io0=$(bc_syscalls)
    t0_ms=$(date +%s%3N)
    while :; do
        st=$(psql_q -At -c "SELECT state FROM api_pushes WHERE id = $id")
        [ "$st" = done ] && break
        [ $(($(date +%s) - t0)) -gt 1800 ] && die "the broadcast did not end in 30 min"
        sleep 0.5
    done
    cpu1=$(bc_cpu_ticks "$lg_pid")
    io1=$(bc_syscalls)
    echo "    read/write syscalls while it ran: $(echo "$io0 $io1" | awk -v n="$n" '{ printf "pushgw %d/%d, mock APNs %d/%d, mock FCM %d/%d (per device: pushgw %.2f/%.2f)", $7 - $1, $8 - $2, $9 - $3, $10 - $4, $11 - $5, $12 - $6, ($7 - $1) / n, ($8 - $2) / n }')" >&2
    for pp in "${perf_pids[@]}"; do kill -INT "$pp" 2>/dev/null || true; wait "$pp" 2>/dev/null || true; done
    echo "    CPU seconds while it ran ($(awk -v a="$t0_ms" -v b="$(date +%s%3N)" "BEGIN { printf \"%.1f\", (b - a) / 1000 }") s, $(nproc) cores): $(echo "$cpu0 $cpu1" | awk -v hz="$(getconf CLK_TCK)" "{ printf \"pushgw %.1f postgres %.1f mocks %.1f loadgen %.1f machine %.1f\", (\$6 - \$1) / hz, (\$7 - \$2) / hz, (\$8 - \$3) / hz, (\$9 - \$4) / hz, (\$10 - \$5) / hz }")" >&2
    curl -s "http://127.0.0.1:$admin_port/metrics" >"$work/bcast.metrics.1"
    [ $pgss = 0 ] || psql_q -c "SELECT calls, round(total_exec_time) AS exec_ms,
        round(total_plan_time) AS plan_ms, rows, shared_blks_read AS blks_read,
        shared_blks_dirtied AS dirtied, shared_blks_written AS written, wal_fpi,
        pg_size_pretty(wal_bytes) AS wal, left(regexp_replace(query, '\\s+', ' ', 'g'), 60)
        AS query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8" >&2
    wait "$lg_pid" || die "loadgen (chat during the broadcast) failed: $(cat "$work/bcast.chat")"
    echo "    $(cat "$work/bcast.chat")" >&2
    rss=$(gw_mem VmHWM)
    out=$(psql_q -At -F ' ' -c "SELECT devices, successes, errors, result,
        extract(epoch FROM finished_at - started_at) FROM api_pushes WHERE id = $id")
    echo "    api_pushes: devices successes errors result seconds: $out" >&2
    stop_gw
    secs=$(echo "$out" | awk '{ print $5 }')
    pps=$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
    ratio=$(awk -v a="$pps" -v b="$fpps" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    p99=$(hist_p99_ms "$work/bcast.metrics.0" "$work/bcast.metrics.1")
    B_LINE="bench broadcast devices=$n pushes_per_s=$pps fanout_ratio=$ratio rss_mib=$rss chat_p99_ms=$p99"
}
