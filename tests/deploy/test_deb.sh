#!/usr/bin/env bash
# usage: test_deb.sh SOURCE_DIR WORK_DIR
#
# The Debian package, as an operator gets it: configures the source with
# CMAKE_INSTALL_PREFIX=/usr in WORK_DIR, builds the daemon, runs
# `cpack -G DEB` and checks the package's fields and files. Then installs
# it with dpkg into a throwaway root, an overlay of this machine's root
# in a private mount namespace (as root; nothing outside it changes), and
# checks what postinst did (the pushgw user, the config's group, the unit
# enabled and not started), runs `pushgw version` and `check-config` as
# the service user, and, with PUSHGW_TEST_DATABASE_URL, the unit's
# ExecStartPre (`migrate --wait`) and ExecStart (`serve`) until /readyz
# answers 200. Without root or overlay mounts, the install is replaced by
# `dpkg -x` and the checks that need it are skipped, saying so.
set -euo pipefail
src=$1 work=$2
fail() { printf 'test_deb: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'test_deb: ok: %s\n' "$*"; }
skip() { printf 'test_deb: SKIPPED: %s\n' "$*"; }

rm -rf "$work"
mkdir -p "$work/build"
log=$work/build.log
# PUSHGW_DEB_PREBUILT: a tree already built as the package's is
# configured (Release, prefix /usr; tests/run.sh's plain pipeline): the
# package is made from its binary, the one the other tests ran, without a
# second build. Anything else is refused, not packaged.
prebuilt=${PUSHGW_DEB_PREBUILT:-}
cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$prebuilt/CMakeCache.txt"; }
if [ -n "$prebuilt" ]; then
    [ -f "$prebuilt/CMakeCache.txt" ] || fail "PUSHGW_DEB_PREBUILT=$prebuilt is not a build tree"
    [ "$(cache_value CMAKE_BUILD_TYPE)" = Release ] &&
        [ "$(cache_value CMAKE_INSTALL_PREFIX)" = /usr ] ||
        fail "PUSHGW_DEB_PREBUILT=$prebuilt: not configured Release with prefix /usr"
    (cd "$prebuilt" && cpack -G DEB -B "$work/build") >"$log" 2>&1 ||
        fail "packaging $prebuilt: $(tail -n 30 "$log")"
else
    {
        cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_INSTALL_PREFIX=/usr -DPUSHGW_TESTS=OFF &&
            cmake --build "$work/build" -j2 --target pushgw &&
            (cd "$work/build" && cpack -G DEB)
    } >"$log" 2>&1 || fail "building the package: $(tail -n 30 "$log")"
fi
deb=$(ls "$work"/build/pushgw_*.deb 2>/dev/null | head -n 1)
[ -f "$deb" ] || fail "no .deb in $work/build: $(tail -n 10 "$log")"
ok "built $(basename "$deb")${prebuilt:+ from $prebuilt}"

# 1. Fields: Depends from the shared libraries, plus the scripts' tools.
depends=$(dpkg-deb -f "$deb" Depends)
for want in libc6 libevent-2.1-7 libevent-openssl-2.1-7 libnghttp2-14 \
    libssl3 libcurl4 libcjson1 libpq5 libinih1 adduser init-system-helpers; do
    grep -qE "(^|, )$want( |,|$)" <<<"$depends" || fail "Depends lacks $want: $depends"
done
ok "Depends: $depends"
conffiles=$(dpkg-deb -I "$deb" conffiles)
[ "$conffiles" = /etc/pushgw/pushgw.ini ] || fail "conffiles: '$conffiles'"
ok "conffiles: $conffiles"
files=$(dpkg-deb -c "$deb" | awk '{print $1, $2, $6}')
for want in '-rwxr-xr-x root/root ./usr/bin/pushgw' \
    '-rw-r----- root/root ./etc/pushgw/pushgw.ini' \
    'drwx------ root/root ./etc/pushgw/keys/' \
    '-rw-r--r-- root/root ./lib/systemd/system/pushgw.service' \
    '-rw-r--r-- root/root ./usr/share/pushgw/migrations/0001_init.sql' \
    '-rw-r--r-- root/root ./usr/share/pushgw/templates/default.json' \
    '-rw-r--r-- root/root ./usr/share/doc/pushgw/examples/alerts.yml'; do
    grep -qxF -- "$want" <<<"$files" || fail "not in the package: '$want': $files"
done
ok "the FHS layout"

# 2. Its files: the config points at the installed folders, the unit at
# the installed binary, and nothing at the build or source trees.
root=$work/extract
dpkg -x "$deb" "$root"
grep -qx 'migrations_dir = /usr/share/pushgw/migrations' "$root/etc/pushgw/pushgw.ini" ||
    fail "pushgw.ini: migrations_dir is not /usr/share/pushgw/migrations"
grep -qx 'dir = /usr/share/pushgw/templates' "$root/etc/pushgw/pushgw.ini" ||
    fail "pushgw.ini: the templates dir is not /usr/share/pushgw/templates"
grep -qx 'ExecStart=/usr/bin/pushgw serve -c /etc/pushgw/pushgw.ini' \
    "$root/lib/systemd/system/pushgw.service" || fail "pushgw.service: ExecStart"
if grep -rlF -e "$src" -e "$work" ${prebuilt:+-e "$prebuilt"} "$root/etc" "$root/lib" "$root/usr/share/pushgw"; then
    fail "the files above name the source or build tree"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
    u=$work/unit
    mkdir -p "$u"
    sed "s|/usr/bin/pushgw|$root/usr/bin/pushgw|g" \
        "$root/lib/systemd/system/pushgw.service" >"$u/pushgw.service"
    out=$(systemd-analyze verify "$u/pushgw.service" 2>&1) || fail "systemd-analyze verify: $out"
    [ -z "$out" ] || fail "systemd-analyze verify warns: $out"
    ok "the installed unit verifies"
fi
out=$("$root/usr/bin/pushgw" version) || fail "pushgw version: $out"
ok "pushgw version (extracted): $out"

# 3. dpkg -i into a throwaway root.
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null 2>&1 ||
    ! unshare -m sh -c "mount -t tmpfs t '$work/unit' && umount '$work/unit'" 2>/dev/null; then
    skip "installing with dpkg needs root and mount namespaces (a throwaway root); checking the extracted files instead"
    out=$(PUSHGW_DATABASE_MIGRATIONS_DIR=$root/usr/share/pushgw/migrations \
        PUSHGW_APP_DEMO_HOOK_KEY=0123456789abcdef0123456789abcdef \
        PUSHGW_TEMPLATES_DIR=$root/usr/share/pushgw/templates \
        "$root/usr/bin/pushgw" check-config -c "$root/etc/pushgw/pushgw.ini" 2>&1) ||
        fail "check-config of the extracted config: $out"
    ok "check-config (extracted): $out"
    exit 0
fi
dburl=${PUSHGW_TEST_DATABASE_URL:-}
db=
if [ -n "$dburl" ] && command -v psql >/dev/null 2>&1; then
    db=pushgw_deb_$$
    psql "$dburl" -qAtc "CREATE DATABASE $db" >/dev/null || fail "could not create database $db"
fi
drop_db() { [ -z "$db" ] || psql "$dburl" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; }
trap drop_db EXIT
set +e
unshare -m --propagation private "$src/tests/deploy/deb_root.sh" "$deb" "$work/root" "$dburl" "$db"
rc=$?
set -e
[ $rc = 0 ] || fail "the install in a throwaway root (exit $rc)"
