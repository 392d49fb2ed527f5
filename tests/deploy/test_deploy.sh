#!/usr/bin/env bash
# usage: test_deploy.sh SOURCE_DIR BINARY_DIR CERTS_DIR [PART] (see CMakeLists.txt)
# The parts, each a ctest test (all of them, in order, without PART):
#   config      the example config, render, the systemd unit
#   quickstart  quickstart.sh --once, twice, and the README's render example
#   serving     quickstart.sh serving until Ctrl-C or SIGTERM; monitoring
#   failure     quickstart.sh with a broken config
set -euo pipefail
src=$1 bin=$2 certs=$3 part=${4:-}
pushgw=$bin/pushgw
fail() { printf 'test_deploy: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'test_deploy: ok: %s\n' "$*"; }

for f in pushgw tests/mock/mock_apns tests/mock/mock_fcm tests/service/hook_server; do
    [ -x "$bin/$f" ] || fail "'$bin/$f' is not built"
done

part_config() {
    # 1. The example config where it stands (the repository's migrations and
    # templates, an app without keys) has one problem: its placeholder
    # hook_key, which pushgw refuses so that it never goes live. With a key
    # from the environment (as the systemd unit gives credentials) it is valid,
    # each problem is reported once, and it stays valid with keys given by the
    # environment.
    set +e
    out=$("$pushgw" check-config -c "$src/deploy/pushgw.ini.example" 2>&1)
    rc=$?
    set -e
    [ $rc = 1 ] && [ "$(grep -c . <<<"$out")" = 1 ] &&
        grep -q "hook_key is the example's placeholder" <<<"$out" ||
        fail "check-config of the example where it stands (rc $rc): $out"
    ok "pushgw.ini.example as it stands: only its placeholder hook_key is refused"
    key=0123456789abcdef0123456789abcdef
    out=$(PUSHGW_APP_DEMO_HOOK_KEY=$key "$pushgw" check-config -c "$src/deploy/pushgw.ini.example" 2>&1) ||
        fail "check-config of the example with a hook key: $out"
    ok "pushgw.ini.example with a hook key: $out"
    set +e
    out=$(PUSHGW_TEMPLATES_DIR=/nonexistent/templates PUSHGW_APP_DEMO_HOOK_KEY=$key \
        "$pushgw" check-config -c "$src/deploy/pushgw.ini.example" 2>&1)
    rc=$?
    set -e
    [ $rc = 1 ] || fail "check-config with a missing templates folder exited $rc, expected 1: $out"
    # (the example is world-readable and holds its key inline: a warning line)
    [ "$(grep -v 'pushgw: warning:' <<<"$out" | grep -c .)" = 1 ] ||
        fail "a missing templates folder is not reported once: $out"
    ok "a missing templates folder: exit 1, one line"
    out=$(PUSHGW_APP_DEMO_HOOK_KEY=$key PUSHGW_APP_DEMO_APNS_TEAM_ID=TEAM000001 PUSHGW_APP_DEMO_APNS_KEY_ID=KEY0000001 \
        PUSHGW_APP_DEMO_APNS_KEY_FILE=$certs/AuthKey_KEY0000001.p8 \
        PUSHGW_APP_DEMO_FCM_SERVICE_ACCOUNT_FILE=$certs/fcm-sa.json \
        "$pushgw" check-config -c "$src/deploy/pushgw.ini.example" 2>&1) ||
        fail "the example with keys from the environment is not valid: $out"
    ok "pushgw.ini.example with keys from the environment: $out"

    # render exits 1 when no device would get a push: the example's app has
    # no keys, so every line is an error.
    set +e
    out=$(jq '.timestamp = (now*1000|floor)' "$src/deploy/demo/render-event.json" |
        PUSHGW_APP_DEMO_HOOK_KEY=$key "$pushgw" render -c "$src/deploy/pushgw.ini.example" --app demo --event - 2>&1)
    rc=$?
    set -e
    [ $rc = 1 ] || fail "render with every line an error exited $rc: $out"
    [ "$(grep -c '"error":"no_' <<<"$out")" = 3 ] && grep -q 'all 3 line(s) are errors' <<<"$out" ||
        fail "render with every line an error: $out"
    ok "render: every line an error, exit 1"

    # Every key of gateway/config.c is in the example.
    keys=$(grep -oE 'KD_[A-Z]+\("[a-z_]+"|\{"[a-z_]+", K_' "$src/gateway/config.c" | grep -oE '"[a-z_]+"' | tr -d '"')
    [ -n "$keys" ] || fail "no keys found in gateway/config.c"
    for k in $keys; do
        grep -qE "^$k =" "$src/deploy/pushgw.ini.example" || fail "key '$k' of config.c is not in pushgw.ini.example"
    done
    ok "pushgw.ini.example has all $(wc -w <<<"$keys") keys of config.c"

    # 2. The systemd unit (when systemd-analyze is there).
    if command -v systemd-analyze >/dev/null 2>&1; then
        unit=$(mktemp -d)
        sed "s|/usr/bin/pushgw|$pushgw|g" "$src/deploy/pushgw.service" >"$unit/pushgw.service"
        out=$(systemd-analyze verify "$unit/pushgw.service" 2>&1) || fail "systemd-analyze verify: $out"
        [ -z "$out" ] || fail "systemd-analyze verify warns: $out"
        rm -rf "$unit"
        ok "pushgw.service verifies"
    fi
}

works=()
cleanup() {
    local w
    for w in "${works[@]}"; do
        if [ -L "$w/var/pg" ]; then
            rm -rf "$(readlink -f "$w/var/pg")"
            rmdir /var/lib/pushgw-quickstart 2>/dev/null || true
        fi
        rm -rf "$w"
    done
}
trap cleanup EXIT

# $work: a copy of the tree for the quickstart to run in, removed at exit.
make_work() {
    for c in curl jq psql; do
        command -v $c >/dev/null 2>&1 || { echo "test_deploy: '$c' missing: skipped"; exit 77; }
    done
    work=$(mktemp -d /tmp/pushgw-deploy-test.XXXXXX)
    works+=("$work")
    mkdir -p "$work/tests/certs"
    cp -r "$src/deploy" "$src/templates" "$src/migrations" "$work/"
    cp "$src/tests/certs/gen-certs.sh" "$work/tests/certs/"
    # The quickstart installs leanengine (npm) into $bin/leanengine, which
    # the parts running side by side share: the first installs it, the
    # others wait for it (the same commands as the quickstart's).
    local lockdir=$src/tests/leancloud nodedir=$bin/leanengine
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
        [ -f "$lockdir/package-lock.json" ]; then
        mkdir -p "$nodedir"
        (
            flock 9
            if ! cmp -s "$lockdir/package-lock.json" "$nodedir/node_modules/.pushgw-lock"; then
                cp "$lockdir/package.json" "$lockdir/package-lock.json" "$nodedir/"
                (cd "$nodedir" && timeout 300 npm ci --prefer-offline --no-audit \
                    --no-fund --loglevel=error) >/dev/null 2>&1 &&
                    cp "$lockdir/package-lock.json" "$nodedir/node_modules/.pushgw-lock"
            fi
        ) 9>"$bin/leanengine.lock"
    fi
}

# 3. The quickstart, twice, in a copy of the tree.
part_quickstart() {
    make_work
    for run in 1 2; do
        set +e
        out=$(PUSHGW_QUICKSTART_PREBUILT=$bin timeout 120 "$work/deploy/quickstart.sh" --once 2>&1)
        rc=$?
        set -e
        [ $rc = 0 ] || fail "quickstart run $run exited $rc: $out"
        for want in "Jerry's iPhone" "Jerry's iPad" "Tom's Android phone" \
            'event 1  APNs production   alert "New message received"' \
            'event 2  APNs development  title "Spike"  alert "Cheese in the kitchen"' \
            'event 3  FCM               title "Server hook"' \
            "9 pushes delivered"; do
            grep -qF "$want" <<<"$out" || fail "quickstart run $run: '$want' not in the output: $out"
        done
        [ "$(grep -c 'event 1  APNs production' <<<"$out")" = 2 ] ||
            fail "quickstart run $run: not both iOS devices got event 1: $out"
        # Nothing it started is left running.
        if pgrep -f "$work/" >/dev/null; then
            fail "quickstart run $run left processes: $(pgrep -af "$work/")"
        fi
        ok "quickstart --once run $run"
    done

    # The README's render example speaks of the quickstart's devices: their
    # ids, tokens and recipients.
    out=$(jq '.timestamp = (now*1000|floor)' "$src/deploy/demo/render-event.json" |
        "$pushgw" render -c "$work/var/pushgw.ini" --app demo --event - 2>&1) ||
        fail "render of deploy/demo/render-event.json: $out"
    [ "$(grep -c . <<<"$out")" = 3 ] || fail "render example: expected 3 lines: $out"
    grep -q '"error"' <<<"$out" && fail "render example: an error line: $out"
    ok "render example: three devices, no error"
}

part_serving() {
    make_work
    # Serving until stopped: Ctrl-C (SIGINT to the whole process group, as a
    # terminal sends it) and SIGTERM (to the script alone) stop everything and
    # exit 0 with one line.
    for sig in INT TERM; do
        log=$work/quickstart-$sig.out
        PUSHGW_QUICKSTART_PREBUILT=$bin setsid "$work/deploy/quickstart.sh" >"$log" 2>&1 &
        qs=$!
        for _ in $(seq 1200); do
            grep -q 'press Ctrl-C' "$log" && break
            kill -0 $qs 2>/dev/null || break
            sleep 0.1
        done
        grep -q 'press Ctrl-C' "$log" || fail "quickstart did not reach serving: $(cat "$log")"
        if [ $sig = INT ]; then
            admin=$(grep -oE 'http://127.0.0.1:[0-9]+/readyz' "$log" | head -n 1 | grep -oE '[0-9]+/' | tr -d /)
            curl -s "http://127.0.0.1:$admin/metrics" >"$work/metrics.txt" ||
                fail "could not read /metrics of the quickstart's pushgw"
            # The README's render example speaks of the demo's devices as the
            # quickstart stores them: ids, tokens, recipients.
            dburl=$(grep -oE 'psql "[^"]+"' "$log" | head -n 1 | sed 's/^psql "//; s/"$//')
            want=$(psql "$dburl" -At -F ' ' -c "SELECT id, lower(device_token), array_to_string(channels, ',')
                FROM installations ORDER BY id") || fail "could not read the demo's installations"
            got=$(jq -r '.installations[] | "\(.id) \(.device_token | ascii_downcase) \(.channels | join(","))"' \
                "$src/deploy/demo/render-event.json")
            [ "$got" = "$want" ] ||
                fail "deploy/demo/render-event.json differs from the demo's installations: '$got' vs '$want'"
            ok "render example: the demo's devices, ids and tokens"
        fi
        before=$(wc -l <"$log")
        if [ $sig = INT ]; then kill -INT -- -$qs; else kill -TERM $qs; fi
        set +e
        wait $qs
        rc=$?
        set -e
        [ $rc = 0 ] || fail "quickstart stopped with SIG$sig exited $rc: $(cat "$log")"
        after=$(tail -n +$((before + 1)) "$log")
        [ "$(grep -c . <<<"$after")" = 1 ] && grep -q 'stopped everything' <<<"$after" ||
            fail "quickstart stopped with SIG$sig: not one line: $after"
        if pgrep -f "$work/" >/dev/null; then
            fail "quickstart stopped with SIG$sig left processes: $(pgrep -af "$work/")"
        fi
        ok "quickstart stopped with SIG$sig: exit 0, '$after'"
    done

    # 4. Monitoring: the metrics the alert rules and the dashboard use are
    # all exported, the exposition passes promtool's lint, the rules check and
    # pass their tests (tests/deploy/alerts_test.yml).
    m=$work/metrics.txt
    grep -q '^pushgw_build_info{version="[^"]*",commit="[^"]*"} 1$' "$m" ||
        fail "no pushgw_build_info in /metrics"
    used=$( (grep -oE '(pushgw|process)_[a-z_]+' "$src/deploy/prometheus/alerts.yml";
        jq -r '.panels[].targets[].expr' "$src/deploy/grafana/pushgw.json" |
            grep -oE '(pushgw|process)_[a-z_]+') | sed -E 's/_(bucket|sum|count)$//' | sort -u)
    [ -n "$used" ] || fail "no metric names found in the rules and the dashboard"
    for name in $used; do
        grep -q "^# TYPE $name " "$m" || fail "'$name' (alerts.yml or pushgw.json) is not in /metrics"
    done
    ok "the $(wc -w <<<"$used") metrics the rules and the dashboard use are exported"
    if command -v promtool >/dev/null 2>&1; then
        out=$(promtool check metrics <"$m" 2>&1) || fail "promtool check metrics: $out"
        out=$(promtool check rules "$src/deploy/prometheus/alerts.yml" 2>&1) ||
            fail "promtool check rules: $out"
        out=$(cd "$src/tests/deploy" && promtool test rules alerts_test.yml 2>&1) ||
            fail "promtool test rules: $out"
        ok "promtool: metrics lint clean, alerts.yml checks and passes its tests"
    else
        echo "test_deploy: SKIPPED: promtool checks (apt-get install prometheus for promtool)"
    fi
}

part_failure() {
    make_work
    # A failure is reported with its reason and a non-zero exit.
    set +e
    out=$(PUSHGW_QUICKSTART_PREBUILT=$bin PUSHGW_APNS_CONNECTIONS=0 timeout 120 \
        "$work/deploy/quickstart.sh" --once 2>&1)
    rc=$?
    set -e
    [ $rc != 0 ] || fail "quickstart with a broken config exited 0: $out"
    grep -q "FAILED: pushgw check-config rejected the demo config" <<<"$out" ||
        fail "quickstart with a broken config did not say why: $out"
    grep -q "connections" <<<"$out" || fail "the failure does not show the log's reason: $out"
    if pgrep -f "$work/" >/dev/null; then
        fail "the failed quickstart left processes: $(pgrep -af "$work/")"
    fi
    ok "quickstart failure: exit $rc with the reason"
}

case $part in
config | quickstart | serving | failure) "part_$part" ;;
'') part_config; part_quickstart; part_serving; part_failure ;;
*) fail "no part '$part' (config, quickstart, serving, failure)" ;;
esac
