#!/usr/bin/env bash
# pushgw quickstart: one command on a fresh Debian 12 machine (as root, or as
# a user with sudo) that shows the whole gateway working, on loopback only.
#
#   1. installs the missing Debian packages (deploy/packages.sh)
#   2. builds pushgw, the mock APNs/FCM servers and the demo server hook
#      (Release, into ./build-quickstart)
#   3. starts a private PostgreSQL under ./var/pg and runs `pushgw migrate`
#   4. creates demo keys (./var/keys), a demo config (./var/pushgw.ini) and
#      demo installations: Jerry's iPhone and iPad, Tom's Android phone
#   5. starts two mock APNs (production, development) and a mock FCM as
#      stand-ins for Apple and Google, and a demo server hook
#   6. starts `pushgw serve` and sends three events, one per way of choosing
#      the content: static template, client pushData (`_profile: "dev"`),
#      server hook; then prints what each device received and why
#   7. keeps serving until Ctrl-C (or exits 0 with --once), then stops
#      everything it started
#
# Every run starts from a clean ./var (the previous one is removed); logs
# stay in ./var/log after the run. Any failure stops with the reason, the
# tail of the relevant log, and a non-zero exit.
#
# Environment: PUSHGW_JOBS (parallel build jobs, default nproc),
# PUSHGW_QUICKSTART_BUILD (build folder, default ./build-quickstart),
# PUSHGW_QUICKSTART_PREBUILT=DIR (use pushgw and the mocks of an existing
# build tree; no package installation, no build: tests/deploy uses it).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: deploy/quickstart.sh [--once]

Brings up pushgw with a private PostgreSQL, mock APNs/FCM (stand-ins for
Apple and Google) and a demo server hook, all on 127.0.0.1, sends three
demo events and prints what each demo device received.

  --once   exit 0 after the demo instead of serving until Ctrl-C
EOF
}

once=0
for arg in "$@"; do
    case $arg in
    --once) once=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
var=$root/var
build=${PUSHGW_QUICKSTART_BUILD:-$root/build-quickstart}
jobs=${PUSHGW_JOBS:-$(nproc)}
demo=$root/deploy/demo
hook_key="demo-hook-key-quickstart"
lc_app_key="demo-app-key"
lc_master_key="demo-master-key"

if [ -t 1 ]; then
    b=$'\e[1m' dim=$'\e[2m' red=$'\e[31m' green=$'\e[32m' off=$'\e[0m'
else
    b='' dim='' red='' green='' off=''
fi

say() { printf '%s==>%s %s\n' "$b" "$off" "$*"; }
note() { printf '    %s\n' "$*"; }

# die REASON [LOG]: the reason, the tail of the log that explains it, exit 1.
# It may run in a subshell ($(...)): the marker file tells the main shell
# that the reason was printed already.
fail_marker=$(mktemp /tmp/pushgw-quickstart.XXXXXX)
die() {
    echo failed >"$fail_marker"
    printf '%squickstart: FAILED: %s%s\n' "$red" "$1" "$off" >&2
    if [ -n "${2:-}" ] && [ -s "$2" ]; then
        printf '%s--- last lines of %s ---%s\n' "$dim" "$2" "$off" >&2
        tail -n 25 "$2" >&2
        printf '%s---%s\n' "$dim" "$off" >&2
    fi
    exit 1
}

# An unexpected failure of any command (set -e) names the step it was in.
step=starting
step_log=
on_err() {
    local rc=$?
    [ -s "$fail_marker" ] && exit 1
    # While serving, bash reports a `wait` a signal interrupted here too,
    # before the signal's trap, which stops.
    [ "$step" = serving ] && return
    die "step '$step': command '$1' exited with status $rc (line $2)" "$step_log"
}
trap 'on_err "$BASH_COMMAND" "$LINENO"' ERR

# --- what this run started, stopped on exit -------------------------------
pids=()      # background processes (mocks, hook, pushgw)
names=()     # their labels, same order
pg_started=0
stopping=0

as_pg() { "$@"; }
if [ "$(id -u)" = 0 ]; then
    # initdb refuses to run as root: the cluster belongs to 'postgres'.
    as_pg() { runuser -u postgres -- "$@"; }
fi

cleanup() {
    local rc=$? i
    trap - ERR
    rm -f "$fail_marker"
    [ $stopping = 1 ] && return
    stopping=1
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        if kill -0 "${pids[$i]}" 2>/dev/null; then
            kill -TERM "${pids[$i]}" 2>/dev/null || true
        fi
    done
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        # Give each process 10 s to exit cleanly, then kill it.
        for _ in $(seq 100); do
            kill -0 "${pids[$i]}" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "${pids[$i]}" 2>/dev/null; then
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
        wait "${pids[$i]}" 2>/dev/null || true
    done
    if [ $pg_started = 1 ]; then
        as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
    fi
    [ ${#pids[@]} -gt 0 ] || [ $pg_started = 1 ] && say "stopped everything the quickstart started (logs in ./var/log)"
    exit "$rc"
}
trap cleanup EXIT
# Ctrl-C or SIGTERM while serving is the normal way to stop: exit 0, and
# the cleanup prints one line. pushgw gets the Ctrl-C too and may exit
# before this trap runs: the end of the script takes that as a stop as
# well. During the demo it interrupts it: 130 or 143.
on_stop() {
    [ "$step" = serving ] && exit 0
    printf 'quickstart: interrupted while %s\n' "$step" >&2
    exit "$1"
}
trap 'on_stop 130' INT
trap 'on_stop 143' TERM

# A loopback TCP port nobody listens on (probed with bash's /dev/tcp),
# below the kernel's ephemeral range so that no outgoing connection holds it.
eph_low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$eph_low" -gt 12000 ] 2>/dev/null || eph_low=32768
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((10000 + RANDOM % (eph_low - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# start NAME LOG CMD...: runs CMD in the background, remembered for cleanup.
start() {
    local name=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 &
    pids+=($!)
    names+=("$name")
}

# wait_port_file NAME FILE LOG: waits (10 s) for a server's --port-file.
wait_port_file() {
    local name=$1 file=$2 log=$3 pid=${pids[-1]}
    for _ in $(seq 200); do
        if [ -s "$file" ]; then
            cat "$file"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "$name exited at start-up" "$log"
        sleep 0.05
    done
    die "$name did not start listening within 10 s" "$log"
}

# --- 1. packages ----------------------------------------------------------
step="installing packages"
. "$root/deploy/packages.sh"
prebuilt=${PUSHGW_QUICKSTART_PREBUILT:-}
if [ -z "$prebuilt" ]; then
    say "checking the Debian packages pushgw needs"
    # libcmocka-dev: the mock servers are part of the test tree, whose cmake
    # configuration requires cmocka.
    pgw_install_packages "${PGW_BUILD_PACKAGES[@]}" "${PGW_RUN_PACKAGES[@]}" \
        libcmocka-dev curl jq || die "could not install the packages (see above)"
else
    for c in curl jq psql openssl; do
        command -v "$c" >/dev/null 2>&1 || die "'$c' is missing (PUSHGW_QUICKSTART_PREBUILT installs nothing)"
    done
    build=$(cd "$prebuilt" && pwd)
fi

# --- 2. a clean ./var; leftovers of an interrupted run stopped ------------
step="preparing ./var"
pgbin=$(pgw_pg_bindir) || die "no PostgreSQL server binaries under /usr/lib/postgresql"
if [ -L "$var/pg" ] || [ -d "$var/pg" ]; then
    pgreal=$(readlink -f "$var/pg")
    if [ -f "$pgreal/data/postmaster.pid" ]; then
        note "stopping the PostgreSQL of an earlier run"
        as_pg "$pgbin/pg_ctl" -D "$pgreal/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
fi
if [ -f "$var/run/pids" ]; then
    # Processes of an earlier run that was killed: only ours (their command
    # line names files in this ./var) are stopped.
    while read -r pid; do
        if [ -r "/proc/$pid/cmdline" ] &&
            tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$var/"; then
            note "stopping process $pid of an earlier run"
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done <"$var/run/pids"
    sleep 0.5
fi
if [ -L "$var/pg" ]; then
    rm -rf "$(readlink -f "$var/pg")"
fi
rm -rf "$var"
mkdir -p "$var/log" "$var/run" "$var/templates"
chmod 755 "$var"

# --- 3. build ---------------------------------------------------------------
step="building"
step_log=$var/log/build.log
if [ -z "$prebuilt" ]; then
    say "building pushgw, the mock APNs/FCM and the demo hook (Release, $build)"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$step_log" 2>&1 ||
        die "cmake configuration failed" "$step_log"
    cmake --build "$build" -j "$jobs" --target pushgw mock_apns mock_fcm hook_server \
        >>"$step_log" 2>&1 || die "the build failed" "$step_log"
else
    say "using the binaries of $build (PUSHGW_QUICKSTART_PREBUILT)"
    for f in pushgw tests/mock/mock_apns tests/mock/mock_fcm tests/service/hook_server; do
        [ -x "$build/$f" ] || die "'$build/$f' is missing: build the tree first"
    done
fi
pushgw=$build/pushgw
note "$("$pushgw" version)"

# --- 4. private PostgreSQL --------------------------------------------------
step="starting PostgreSQL"
step_log=$var/log/postgres.log
pgdir=$var/pg
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "user 'postgres' is missing (package postgresql not installed?)"
    mkdir -p "$pgdir"
    chown postgres: "$pgdir"
    if ! runuser -u postgres -- test -w "$pgdir"; then
        # The checkout is in a folder 'postgres' cannot enter (e.g. /root):
        # the cluster lives in /var/lib/pushgw-quickstart and ./var/pg links
        # to it.
        rmdir "$pgdir"
        real=/var/lib/pushgw-quickstart/$(printf '%s' "$root" | md5sum | cut -c1-12)
        rm -rf "$real"
        mkdir -p "$real"
        chown postgres: "$real"
        chmod 700 "$real"
        ln -s "$real" "$pgdir"
        note "PostgreSQL files in $real ('postgres' cannot enter $root); ./var/pg links there"
    fi
else
    mkdir -p "$pgdir"
fi
pgdir=$(readlink -f "$pgdir")
pgdata=$pgdir/data
pgsock=$pgdir
if [ ${#pgsock} -gt 80 ]; then
    # A unix socket path is limited to 107 bytes.
    pgsock=$(mktemp -d /tmp/pushgw-qs-sock.XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres: "$pgsock"
fi
# postgres writes its log itself: the file must be the cluster owner's.
pglog=$pgdir/postgres.log
ln -sf "$pglog" "$var/log/postgres.log"
step_log=$pgdir/initdb.log
as_pg "$pgbin/initdb" -D "$pgdata" -U postgres --auth=trust --no-instructions \
    -E UTF8 --locale=C >"$step_log" 2>&1 || die "initdb failed" "$step_log"
step_log=$pglog
for attempt in 1 2 3; do
    pgport=$(free_port) || die "no free loopback port for PostgreSQL"
    if as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$pglog" -w -t 30 \
        -o "-k $pgsock -c listen_addresses=127.0.0.1 -p $pgport" \
        start >/dev/null 2>&1; then
        pg_started=1
        break
    fi
    [ $attempt = 3 ] && die "PostgreSQL did not start" "$pglog"
done
say "private PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pgport and unix socket $pgsock"
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "host=$pgsock port=$pgport user=postgres dbname=postgres" "$@"; }
psql_admin -c "CREATE DATABASE pushgw" >"$var/log/psql.log" 2>&1 ||
    die "could not create the database 'pushgw'" "$var/log/psql.log"
dburl="host=$pgsock port=$pgport user=postgres dbname=pushgw"
psql_demo() { psql -X -q -v ON_ERROR_STOP=1 "$dburl" "$@"; }

# --- 5. demo keys ----------------------------------------------------------
step="creating demo keys"
step_log=$var/log/keys.log
"$root/tests/certs/gen-certs.sh" "$var/keys" >"$step_log" 2>&1 ||
    die "could not generate the demo keys" "$step_log"
say "demo keys in ./var/keys: a CA and a 127.0.0.1 certificate for the mocks, APNs key KEY0000001 (.p8), an FCM service account"
note "(made up for the demo: Apple and Google would not accept them)"

# --- 6. the stand-ins for Apple and Google, and the demo server hook --------
step="starting the mock servers"
keys=$var/keys
mock_common=(--listen 127.0.0.1:0 --cert "$keys/server.pem" --key "$keys/server.key" --quiet)
declare -A port
for env in production development; do
    log=$var/log/mock-apns-$env.log
    start "mock APNs $env" "$log" "$build/tests/mock/mock_apns" "${mock_common[@]}" \
        --team "TEAM000001:KEY0000001:$keys/AuthKey_KEY0000001.pub.pem" \
        --topic com.example.demo \
        --port-file "$var/run/apns-$env.port" --record "$var/run/apns-$env.jsonl"
    port[apns-$env]=$(wait_port_file "mock APNs $env" "$var/run/apns-$env.port" "$log")
done
log=$var/log/mock-fcm.log
start "mock FCM" "$log" "$build/tests/mock/mock_fcm" "${mock_common[@]}" \
    --service-account-pub "$keys/fcm-sa.pub.pem" \
    --client-email pushgw@pushgw-test.iam.gserviceaccount.com \
    --project pushgw-test \
    --port-file "$var/run/fcm.port" --record "$var/run/fcm.jsonl"
port[fcm]=$(wait_port_file "mock FCM" "$var/run/fcm.port" "$log")
log=$var/log/hook.log
# The demo hook is a LeanEngine app (npm leanengine, deploy/demo/leanengine.js)
# when node and npm are there and the pinned packages install; else the
# test hook server with the same answers (deploy/demo/hook-answers.json).
hook_kind=server
hook_path=/receiversOffline
lockdir=$root/tests/leancloud
nodedir=$build/leanengine
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
    [ -f "$lockdir/package-lock.json" ]; then
    mkdir -p "$nodedir"
    if ! cmp -s "$lockdir/package-lock.json" "$nodedir/node_modules/.pushgw-lock"; then
        note "installing leanengine from npm (tests/leancloud/package-lock.json) into $nodedir"
        cp "$lockdir/package.json" "$lockdir/package-lock.json" "$nodedir/"
        if (cd "$nodedir" && timeout 300 npm ci --prefer-offline --no-audit \
            --no-fund --loglevel=error) >"$var/log/npm.log" 2>&1; then
            cp "$lockdir/package-lock.json" "$nodedir/node_modules/.pushgw-lock"
        fi
    fi
    if [ -f "$nodedir/node_modules/.pushgw-lock" ]; then
        port[hook]=$(free_port) || die "no free loopback port for the LeanEngine app"
        start "demo LeanEngine app" "$log" env NODE_PATH="$nodedir/node_modules" \
            LEANCLOUD_APP_ID=demo LEANCLOUD_APP_KEY="$lc_app_key" \
            LEANCLOUD_APP_MASTER_KEY="$lc_master_key" \
            LEANCLOUD_APP_HOOK_KEY=demo-server-hook-key \
            LEANCLOUD_APP_PORT="${port[hook]}" \
            node "$demo/leanengine.js" "$var/run/hook.jsonl"
        for _ in $(seq 200); do
            curl -s -o /dev/null "http://127.0.0.1:${port[hook]}/" && break
            kill -0 "${pids[-1]}" 2>/dev/null || die "the LeanEngine app exited at start-up" "$log"
            sleep 0.05
        done
        hook_kind=leanengine
        hook_path=/1.1/functions/_receiversOffline
    else
        note "npm could not install leanengine ($var/log/npm.log): the test hook server stands in"
    fi
fi
if [ $hook_kind = server ]; then
    start "demo server hook" "$log" "$build/tests/service/hook_server" \
        --answers "$demo/hook-answers.json" \
        --port-file "$var/run/hook.port" --record "$var/run/hook.jsonl"
    port[hook]=$(wait_port_file "demo server hook" "$var/run/hook.port" "$log")
fi
printf '%s\n' "${pids[@]}" >"$var/run/pids"
say "mock APNs production  (stand-in for Apple's api.push.apple.com,         on 127.0.0.1:${port[apns-production]})"
say "mock APNs development (stand-in for Apple's api.sandbox.push.apple.com, on 127.0.0.1:${port[apns-development]})"
say "mock FCM              (stand-in for Google's fcm.googleapis.com and OAuth, on 127.0.0.1:${port[fcm]})"
if [ $hook_kind = leanengine ]; then
    say "demo LeanEngine app   (the app's _receiversOffline hook: a stock leanengine app, deploy/demo/leanengine.js, on 127.0.0.1:${port[hook]})"
else
    say "demo server hook      (the app's _receiversOffline hook, deploy/demo/hook-answers.json, on 127.0.0.1:${port[hook]})"
fi

# --- 7. config, migrations, installations ------------------------------------
step="writing the demo config"
cp "$root"/templates/*.json "$var/templates/"
write_config() {
gw_port=$(free_port) || die "no free loopback port for pushgw"
admin_port=$(free_port) || die "no free loopback port for pushgw's admin listener"
while [ "$admin_port" = "$gw_port" ]; do admin_port=$(free_port); done
client_port=$(free_port) || die "no free loopback port for pushgw's /1.1/ API"
while [ "$client_port" = "$gw_port" ] || [ "$client_port" = "$admin_port" ]; do
    client_port=$(free_port)
done
cat >"$var/pushgw.ini" <<EOF
; Written by deploy/quickstart.sh: the demo configuration. Every key is
; explained in deploy/pushgw.ini.example. Relative paths are relative to
; this file's folder.
[server]
listen = 127.0.0.1:$gw_port
admin_listen = 127.0.0.1:$admin_port
; the LeanCloud-compatible /1.1/ API the apps' SDKs register devices with
client_listen = 127.0.0.1:$client_port
log_level = info

[database]
url = $dburl
migrations_dir = $root/migrations

[templates]
dir = templates

; The mocks stand in for Apple and Google. Their certificate is signed by the
; demo CA: ca_file adds it as a trust anchor (verification stays on).
[apns]
production_url = https://127.0.0.1:${port[apns-production]}
development_url = https://127.0.0.1:${port[apns-development]}
ca_file = keys/ca.pem

[fcm]
url = https://127.0.0.1:${port[fcm]}
token_url = https://127.0.0.1:${port[fcm]}/token
ca_file = keys/ca.pem

[app:demo]
hook_key = $hook_key
server_hook_url = http://127.0.0.1:${port[hook]}$hook_path
server_hook_key = demo-server-hook-key
; the app's LeanCloud keys: its SDKs sign with them, and pushgw signs its
; calls to the hook (a LeanEngine app checks them)
app_key = $lc_app_key
master_key = $lc_master_key
apns_topic = com.example.demo
apns_team_id = TEAM000001
apns_key_id = KEY0000001
apns_key_file = keys/AuthKey_KEY0000001.p8
fcm_service_account_file = keys/fcm-sa.json
EOF
chmod 600 "$var/pushgw.ini"
}
write_config
step_log=$var/log/check-config.log
"$pushgw" check-config -c "$var/pushgw.ini" >"$step_log" 2>&1 ||
    die "pushgw check-config rejected the demo config" "$step_log"
say "demo config ./var/pushgw.ini: app 'demo' (hook key '$hook_key')"

step="migrating"
step_log=$var/log/migrate.log
"$pushgw" migrate -c "$var/pushgw.ini" >"$step_log" 2>&1 ||
    die "pushgw migrate failed" "$step_log"
say "pushgw migrate: $(grep -c . "$step_log" || true) line(s) of output, schema ready"
sed 's/^/    /' "$step_log"

step="adding the demo installations"
step_log=$var/log/psql.log
psql_demo -f "$demo/installations.sql" >"$step_log" 2>&1 ||
    die "could not insert the demo installations" "$step_log"
say "demo installations (deploy/demo/installations.sql):"
psql_demo -At -F ' ' -c "SELECT id, installation_id, device_type, array_to_string(channels, ','),
    left(device_token, 8) || '…' FROM installations ORDER BY id" |
    while read -r id inst type chan tok; do
        printf '    #%s %-12s %-8s channels {%s}  token %s\n' "$id" "$inst" "$type" "$chan" "$tok"
    done

# --- 8. pushgw serve ---------------------------------------------------------
step="starting pushgw serve"
step_log=$var/log/pushgw.log
ready=0
for attempt in 1 2 3; do
    start "pushgw serve" "$step_log" "$pushgw" serve -c "$var/pushgw.ini"
    gw_pid=${pids[-1]}
    printf '%s\n' "${pids[@]}" >"$var/run/pids"
    for _ in $(seq 300); do
        kill -0 "$gw_pid" 2>/dev/null || break
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin_port/readyz" || true)
        if [ "$code" = 200 ]; then ready=1; break; fi
        sleep 0.1
    done
    [ $ready = 1 ] && break
    kill -0 "$gw_pid" 2>/dev/null && break
    # A port taken between the probe and the bind: new ports, once more.
    wait "$gw_pid" 2>/dev/null || true
    unset 'pids[-1]' 'names[-1]'
    if [ $attempt -lt 3 ] && grep -q 'Address already in use' "$step_log"; then
        note "a port was taken meanwhile: trying other ports"
        write_config
        continue
    fi
    die "pushgw serve exited at start-up" "$step_log"
done
[ $ready = 1 ] || die "pushgw serve did not become ready within 30 s (/readyz answered '$code')" "$step_log"
say "pushgw serve is ready: webhook http://127.0.0.1:$gw_port, admin http://127.0.0.1:$admin_port (/metrics /healthz /readyz)"

# --- 8b. a device registers the way LeanCloud's SDKs do it ------------------
step="registering Jerry's iPad through the /1.1/ API"
step_log=$var/log/register.log
ts=$(date +%s%3N)
sign=$(printf '%s' "$ts$lc_app_key" | md5sum | cut -c1-32)
say "Jerry's iPad registers as a LeanCloud SDK does (POST /1.1/installations, X-LC-Sign made with the app key)"
note "${dim}curl -X POST http://127.0.0.1:$client_port/1.1/installations -H 'X-LC-Id: demo' -H 'X-LC-Sign: $sign,$ts' -d '{\"deviceType\":\"ios\",\"installationId\":\"jerry-ipad\",\"deviceToken\":\"B2B2…\",\"channels\":[\"Jerry\"]}'${off}"
resp=$(curl -sS -X POST "http://127.0.0.1:$client_port/1.1/installations" \
    -H 'X-LC-Id: demo' -H "X-LC-Sign: $sign,$ts" -H 'Content-Type: application/json' \
    -d "{\"deviceType\":\"ios\",\"installationId\":\"jerry-ipad\",\"deviceToken\":\"$(printf 'B2%.0s' $(seq 32))\",\"channels\":[\"Jerry\"],\"timeZone\":\"Europe/Paris\"}" \
    -w '\n%{http_code}' 2>"$step_log") || die "curl could not register the iPad: $resp" "$step_log"
code=${resp##*$'\n'}
[ "$code" = 201 ] || [ "$code" = 200 ] || die "POST /1.1/installations answered $code: ${resp%$'\n'*}" "$var/log/pushgw.log"
note "-> $code ${resp%$'\n'*}"

# --- 9. the three demo events -------------------------------------------------
step="sending the demo events"
files=(apns-production apns-development fcm)
lines() { if [ -f "$var/run/$1.jsonl" ]; then wc -l <"$var/run/$1.jsonl"; else echo 0; fi; }
declare -A from to
titles=("static template" "client pushData" "server hook")
ev_files=(event-1-template.json event-2-pushdata.json event-3-hook.json)
event_ids=()
for n in 1 2 3; do
    f=${ev_files[$((n - 1))]}
    for k in "${files[@]}"; do from[$n.$k]=$(($(lines "$k") + 1)); done
    body=$(jq -c --argjson ts "$(date +%s%3N)" '. + {timestamp: $ts}' "$demo/$f")
    printf '\n'
    say "event $n (${titles[$((n - 1))]}): deploy/demo/$f"
    note "${dim}curl -X POST http://127.0.0.1:$gw_port/v1/apps/demo/receivers-offline -H 'X-LC-Hook-Key: $hook_key' -H 'Content-Type: application/json' -d @deploy/demo/$f${off}"
    resp=$(curl -sS -X POST "http://127.0.0.1:$gw_port/v1/apps/demo/receivers-offline" \
        -H "X-LC-Hook-Key: $hook_key" -H 'Content-Type: application/json' \
        -d "$body" -w '\n%{http_code}' 2>&1) || die "curl could not post event $n: $resp" "$step_log"
    code=${resp##*$'\n'}
    resp=${resp%$'\n'*}
    [ "$code" = 202 ] || die "pushgw answered $code to event $n: $resp" "$step_log"
    note "answer: 202 $resp"
    eid=$(jq -r .eventId <<<"$resp")
    event_ids+=("$eid")
    # Wait until the event's first pass is finished (state no longer pending).
    state=
    for _ in $(seq 300); do
        state=$(psql_demo -At -F '|' -c "SELECT state, coalesce(result, ''), pushes_total, pushes_delivered FROM events WHERE id = $eid")
        case $state in pending*) ;; *) break ;; esac
        kill -0 "$gw_pid" 2>/dev/null || die "pushgw serve exited while working event $n" "$step_log"
        sleep 0.1
    done
    IFS='|' read -r st result total delivered <<<"$state"
    [ "$st" != pending ] || die "event $n was not worked within 30 s (state '$state')" "$step_log"
    note "events table: state '$st', result '$result', $delivered of $total push(es) delivered"
    [ "$st" = "done" ] && [ "$delivered" = "$total" ] && [ "$total" -gt 0 ] ||
        die "event $n did not deliver all its pushes (state '$st', result '$result', $delivered/$total)" "$step_log"
    for k in "${files[@]}"; do to[$n.$k]=$(lines "$k"); done
done

# --- 10. what each device received ------------------------------------------
step="printing the deliveries"
why=(
    "no hook pushMessage (the hook answered {}), no pushData: the static template templates/default.json"
    "no hook pushMessage, the client's pushData wins; _profile \"dev\" sends iOS to the development endpoint"
    "the server hook answered a pushMessage: it wins over the event's pushData"
)
endpoint_label() {
    case $1 in
    apns-production) echo "APNs production " ;;
    apns-development) echo "APNs development" ;;
    fcm) echo "FCM             " ;;
    esac
}
# One line per request that reached a stand-in: what the device shows.
show='if .path == "/token" then empty
  elif (.body | type) != "object" then "status \(.status) (body not JSON)"
  elif .body.aps then
    (.body.aps.alert) as $a
    | (if ($a | type) == "object" then "title \"\($a.title // "")\"  alert \"\($a.body // "")\""
       else "alert \"\($a // "")\"" end)
      + (if .body.aps.badge != null then "  badge \(.body.aps.badge)" else "" end)
      + (if .body.aps.sound != null then "  sound \(.body.aps.sound)" else "" end)
      + (if .status != 200 then "  -> \(.status) \(.reason)" else "" end)
  else
    (.body.message.notification // {}) as $n
    | (if $n.title then "title \"\($n.title)\"  " else "" end)
      + "body \"\($n.body // "")\""
      + (if (.body.message.data // {}) != {} then "  data \(.body.message.data | tojson)" else "" end)
      + (if .status != 200 then "  -> \(.status) \(.error)" else "" end)
  end'
printf '\n'
say "${green}what each demo device received${off} (from the stand-ins' request records, ./var/run/*.jsonl)"
psql_demo -At -F ' ' -c "SELECT installation_id, device_type, device_token, badge FROM installations ORDER BY id" |
    while read -r inst type token badge; do
        case $inst in
        jerry-iphone) label="Jerry's iPhone" ;;
        jerry-ipad) label="Jerry's iPad" ;;
        tom-android) label="Tom's Android phone" ;;
        *) label=$inst ;;
        esac
        printf '\n  %s%s%s  (%s, token %s…%s)\n' "$b" "$label" "$off" "$type" "${token:0:8}" \
            "$([ "$type" = ios ] && echo ", badge now $badge")"
        for n in 1 2 3; do
            got=0
            for k in "${files[@]}"; do
                s=${from[$n.$k]} e=${to[$n.$k]}
                [ "$e" -ge "$s" ] || continue
                while IFS= read -r text; do
                    [ -n "$text" ] || continue
                    printf '    event %s  %s  %s\n' "$n" "$(endpoint_label "$k")" "$text"
                    got=1
                done < <(sed -n "${s},${e}p" "$var/run/$k.jsonl" |
                    jq -r --arg t "$token" "select(.token == \$t) | $show")
            done
            [ $got = 1 ] || printf '    event %s  (nothing)\n' "$n"
        done
    done
printf '\n  %swhy (content precedence: server hook pushMessage > client pushData > static template)%s\n' "$b" "$off"
for n in 1 2 3; do
    printf '    event %s: %s\n' "$n" "${why[$((n - 1))]}"
done
hooks=$(grep -c . "$var/run/hook.jsonl" || true)
printf '    the demo hook was asked %s time(s), once per event (./var/run/hook.jsonl)\n' "$hooks"

# Sanity check of the demo itself: every device got every event.
expected=$((3 * 3))
got=$(for k in "${files[@]}"; do jq -r 'select(.path != "/token" and .status == 200) | .token' "$var/run/$k.jsonl"; done | grep -c . || true)
[ "$got" = "$expected" ] || die "expected $expected deliveries at the stand-ins, saw $got" "$var/log/pushgw.log"

printf '\n'
if [ $once = 1 ]; then
    say "${green}demo finished: $got pushes delivered to the stand-ins${off} (--once: stopping)"
    exit 0
fi
say "${green}demo finished.${off} pushgw keeps serving; try it (another terminal):"
cat <<EOF
    curl -i http://127.0.0.1:$admin_port/readyz
    curl -s http://127.0.0.1:$admin_port/metrics | grep '^pushgw_'
    curl -i -X POST http://127.0.0.1:$gw_port/v1/apps/demo/receivers-offline \\
         -H 'X-LC-Hook-Key: $hook_key' -H 'Content-Type: application/json' \\
         -d '{"fromPeer":"Tom","convId":"c1","offlinePeers":["Jerry"],"content":"hi","timestamp":'\$(date +%s%3N)'}'
    tail -f var/run/apns-production.jsonl          # what mock APNs receives
    psql "$dburl"
EOF
say "press Ctrl-C to stop everything"
step="serving"
step_log=$var/log/pushgw.log
rc=0
wait "$gw_pid" || rc=$?
# pushgw stopped by a signal: a stop (the cleanup prints the one line).
[ $rc = 0 ] && exit 0
die "pushgw serve exited with status $rc" "$step_log"
