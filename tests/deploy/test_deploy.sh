#!/usr/bin/env bash
# usage: test_deploy.sh SOURCE_DIR BINARY_DIR CERTS_DIR (see CMakeLists.txt)
set -euo pipefail
src=$1 bin=$2 certs=$3
pushgw=$bin/pushgw
fail() { printf 'test_deploy: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'test_deploy: ok: %s\n' "$*"; }

for f in pushgw tests/mock/mock_apns tests/mock/mock_fcm tests/service/hook_server; do
    [ -x "$bin/$f" ] || fail "'$bin/$f' is not built"
done

# 1. The example config: every problem is a missing file, none is a key.
set +e
out=$("$pushgw" check-config -c "$src/deploy/pushgw.ini.example" 2>&1)
rc=$?
set -e
[ $rc = 1 ] || fail "check-config of the example exited $rc, expected 1 (missing files): $out"
bad=$(grep -v "No such file or directory" <<<"$out" || true)
[ -z "$bad" ] || fail "check-config of the example reports more than missing files: $bad"
grep -q "AuthKey_KEY0000001.p8" <<<"$out" || fail "the example's APNs key was not checked: $out"
ok "pushgw.ini.example: only missing files ($(grep -c . <<<"$out") of them)"

# ... and valid once the files exist (environment overrides, as the systemd
# unit does with its credentials).
out=$(PUSHGW_APP_DEMO_APNS_KEY_FILE=$certs/AuthKey_KEY0000001.p8 \
    PUSHGW_APP_DEMO_FCM_SERVICE_ACCOUNT_FILE=$certs/fcm-sa.json \
    PUSHGW_DATABASE_MIGRATIONS_DIR=$src/migrations \
    PUSHGW_TEMPLATES_DIR=$src/templates \
    "$pushgw" check-config -c "$src/deploy/pushgw.ini.example" 2>&1) ||
    fail "the example with its files present is not valid: $out"
ok "pushgw.ini.example with its files present: $out"

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
    sed "s|/usr/local/bin/pushgw|$pushgw|g" "$src/deploy/pushgw.service" >"$unit/pushgw.service"
    out=$(systemd-analyze verify "$unit/pushgw.service" 2>&1) || fail "systemd-analyze verify: $out"
    [ -z "$out" ] || fail "systemd-analyze verify warns: $out"
    rm -rf "$unit"
    ok "pushgw.service verifies"
fi

# 3. The quickstart, twice, in a copy of the tree.
for c in curl jq psql; do
    command -v $c >/dev/null 2>&1 || { echo "test_deploy: '$c' missing: skipped"; exit 77; }
done
work=$(mktemp -d /tmp/pushgw-deploy-test.XXXXXX)
cleanup() {
    if [ -L "$work/var/pg" ]; then
        rm -rf "$(readlink -f "$work/var/pg")"
        rmdir /var/lib/pushgw-quickstart 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/tests/certs"
cp -r "$src/deploy" "$src/templates" "$src/migrations" "$work/"
cp "$src/tests/certs/gen-certs.sh" "$work/tests/certs/"
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
