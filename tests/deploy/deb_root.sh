#!/usr/bin/env bash
# usage: deb_root.sh DEB DIR [DBURL DB]
#
# Run by test_deb.sh in a private mount namespace, as root: mounts an
# overlay of / on DIR/root (the writes go to a tmpfs, gone with the
# namespace), installs DEB there with dpkg, checks what its scripts did,
# and runs the unit's commands as the pushgw user. With DBURL (a libpq
# conninfo) and DB (an empty database on that server), migrates it and
# serves until /readyz answers 200.
set -euo pipefail
deb=$1 dir=$2 dburl=${3:-} db=${4:-}
fail() { printf 'test_deb: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'test_deb: ok: %s\n' "$*"; }

mkdir -p "$dir"
mount -t tmpfs pushgw-deb "$dir"
mkdir "$dir/upper" "$dir/work" "$dir/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
r=$dir/root
# Other file systems are not part of the overlay: what dpkg and its
# scripts need of them.
mount -t proc proc "$r/proc"
mount --bind /dev "$r/dev"
mount -t tmpfs tmp "$r/tmp"
mount -t tmpfs run "$r/run"
in_root() { chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

cp "$deb" "$r/tmp/pushgw.deb"
out=$(in_root env DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/pushgw.deb 2>&1) ||
    fail "dpkg -i: $out"
ok "dpkg -i $(basename "$deb")"

# postinst: a system user, the config readable by its group, the unit
# enabled, not started (there is no running systemd here: postinst must
# not need one).
user=$(in_root getent passwd pushgw) || fail "no pushgw user"
IFS=: read -r _ _ uid _ _ home shell <<<"$user"
[ "$uid" -lt 1000 ] && [ "$shell" = /usr/sbin/nologin ] && [ "$home" = /nonexistent ] ||
    fail "the pushgw user is not a system user: $user"
mode=$(in_root stat -c '%U:%G %a' /etc/pushgw/pushgw.ini)
[ "$mode" = "root:pushgw 640" ] || fail "/etc/pushgw/pushgw.ini is $mode"
mode=$(in_root stat -c '%U:%G %a' /etc/pushgw/keys)
[ "$mode" = "root:root 700" ] || fail "/etc/pushgw/keys is $mode"
[ "$(readlink "$r/etc/systemd/system/multi-user.target.wants/pushgw.service")" = \
    /lib/systemd/system/pushgw.service ] || fail "pushgw.service is not enabled"
ok "postinst: system user '$user', config root:pushgw 640, keys root 700, unit enabled"

out=$(in_root runuser -u pushgw -- pushgw version) || fail "pushgw version: $out"
ok "pushgw version: $out"
# The packaged config ships the example's placeholder hook_key, which
# pushgw refuses: the operator sets a key (here through the environment,
# as the unit's credentials would) before the service starts.
hook_key=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
out=$(in_root runuser -u pushgw -- pushgw check-config 2>&1) &&
    fail "check-config accepted the placeholder hook_key: $out"
grep -q "hook_key is the example's placeholder" <<<"$out" ||
    fail "check-config of the packaged config: $out"
ok "the packaged config refuses its placeholder hook_key"
out=$(in_root runuser -u pushgw -- env PUSHGW_APP_DEMO_HOOK_KEY="$hook_key" \
    pushgw check-config 2>&1) ||
    fail "check-config of /etc/pushgw/pushgw.ini as pushgw: $out"
ok "check-config as pushgw: $out"

if [ -n "$dburl" ] && [ -n "$db" ]; then
    # The test server's socket folder, when it has one, is outside the
    # overlay.
    sockdir=$(grep -oE '(^| )host=/[^ ]+' <<<"$dburl" | sed 's/.*host=//' || true)
    if [ -n "$sockdir" ]; then
        mkdir -p "$r$sockdir"
        mount --bind "$sockdir" "$r$sockdir"
    fi
    case $dburl in
    postgres://* | postgresql://*) url="${dburl%%\?*}" url="${url%/*}/$db" ;;
    *) url="$dburl dbname=$db" ;;
    esac
    # ExecStartPre, then ExecStart, as the unit runs them.
    out=$(in_root runuser -u pushgw -- env PUSHGW_DATABASE_URL="$url" \
        PUSHGW_APP_DEMO_HOOK_KEY="$hook_key" \
        pushgw migrate --wait 30 -c /etc/pushgw/pushgw.ini 2>&1) ||
        fail "migrate --wait as pushgw: $out"
    ok "migrate --wait: $(tail -n 1 <<<"$out")"
    port() {
        local p
        for _ in $(seq 50); do
            p=$((20000 + RANDOM % 10000))
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
        done
        return 1
    }
    web=$(port) admin=$(port)
    # chroot, env and pushgw exec each other: $! is pushgw itself.
    chroot --userspec=pushgw:pushgw "$r" env -i PATH=/usr/bin:/bin \
        PUSHGW_DATABASE_URL="$url" PUSHGW_SERVER_LISTEN="127.0.0.1:$web" PUSHGW_SERVER_ADMIN_LISTEN="127.0.0.1:$admin" \
        PUSHGW_APP_DEMO_HOOK_KEY="$hook_key" \
        pushgw serve -c /etc/pushgw/pushgw.ini >"$dir/serve.log" 2>&1 &
    pid=$!
    code=
    for _ in $(seq 200); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz" || true)
        [ "$code" = 200 ] && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    metrics=$(curl -s "http://127.0.0.1:$admin/metrics" || true)
    kill -TERM $pid 2>/dev/null || true
    set +e
    wait $pid
    rc=$?
    set -e
    [ "$code" = 200 ] || fail "serve never answered 200 on /readyz ('$code'): $(cat "$dir/serve.log")"
    [ $rc = 0 ] || fail "serve exited $rc after SIGTERM: $(cat "$dir/serve.log")"
    grep -q '^pushgw_build_info{version="[^"]*",commit="[0-9a-f]\{12\}\(-dirty\)\?"} 1$' <<<"$metrics" ||
        fail "no pushgw_build_info with a commit in /metrics: $(grep build_info <<<"$metrics")"
    ok "serve as pushgw: /readyz 200, $(grep ^pushgw_build_info <<<"$metrics"), SIGTERM exit 0"
    [ -z "$sockdir" ] || umount "$r$sockdir"
fi

# Removal keeps the operator's config; purge takes it and the unit's state.
out=$(in_root dpkg -r pushgw 2>&1) || fail "dpkg -r: $out"
[ -f "$r/etc/pushgw/pushgw.ini" ] || fail "dpkg -r removed the config"
[ ! -e "$r/usr/bin/pushgw" ] || fail "dpkg -r left /usr/bin/pushgw"
out=$(in_root dpkg -P pushgw 2>&1) || fail "dpkg -P: $out"
[ ! -e "$r/etc/pushgw" ] || fail "dpkg -P left /etc/pushgw: $(ls -la "$r/etc/pushgw")"
[ ! -e "$r/etc/systemd/system/multi-user.target.wants/pushgw.service" ] ||
    fail "dpkg -P left the unit enabled"
ok "dpkg -r keeps the config, dpkg -P removes it"
