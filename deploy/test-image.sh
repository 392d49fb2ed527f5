#!/usr/bin/env bash
# Builds the container image (deploy/Dockerfile) with podman or docker and
# runs it: `version`, `check-config` of the image's own config, and with
# PUSHGW_TEST_DATABASE_URL (a libpq conninfo of a server where it may
# create a database) `migrate --wait` and `serve` until /readyz answers
# 200, then `docker stop` (exit 0 expected). Not part of CI: it needs a
# container engine (apt-get install podman). Without a registry, the
# Debian 12 base is made locally with mmdebstrap (apt-get install
# mmdebstrap) and imported as localhost/debian:bookworm-slim.
#
#   deploy/test-image.sh            # PUSHGW_ENGINE=podman|docker to choose
#
# Exit: 0 all passed; 1 a check failed; 77 no container engine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
image=localhost/pushgw:test
fail() { printf 'test-image: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'test-image: ok: %s\n' "$*"; }

engine=${PUSHGW_ENGINE:-}
if [ -z "$engine" ]; then
    for e in podman docker; do
        if command -v $e >/dev/null 2>&1 && $e info >/dev/null 2>&1; then
            engine=$e
            break
        fi
    done
fi
[ -n "$engine" ] || { echo "test-image: no working podman or docker: skipped"; exit 77; }

# The base image: the registry's, else one made here.
base=${PUSHGW_BASE_IMAGE:-debian:bookworm-slim}
if ! $engine image exists "$base" 2>/dev/null && ! $engine image inspect "$base" >/dev/null 2>&1 &&
    ! $engine pull "$base" >/dev/null 2>&1; then
    command -v mmdebstrap >/dev/null 2>&1 ||
        fail "cannot pull '$base' and mmdebstrap is missing to make it (apt-get install mmdebstrap)"
    base=localhost/debian:bookworm-slim
    if ! $engine image inspect "$base" >/dev/null 2>&1; then
        echo "test-image: making $base with mmdebstrap"
        mmdebstrap --quiet --variant=apt bookworm - | $engine import - "$base" >/dev/null ||
            fail "mmdebstrap | $engine import"
    fi
fi

# How the image runs: as containers; or, where the engine cannot start one
# (podman inside a container without cgroups or rlimits of its own), as
# its file system in a chroot, with the image's user, environment,
# working folder, entrypoint and command (root only).
mode=container
if ! $engine run --rm --network host "$base" true >/dev/null 2>&1; then
    [ "$engine" = podman ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 ||
        fail "$engine cannot run a container here"
    mode=chroot
fi

commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# The host's network: the build's apt-get reaches the host's mirror the
# way the host does (also inside a container, where bridges may not work).
opts=()
[ "$engine" = podman ] && opts=(--format docker) # keeps the HEALTHCHECK
[ $mode = chroot ] && opts+=(--isolation chroot)
$engine build -q --network host "${opts[@]}" -f "$root/deploy/Dockerfile" --build-arg BASE="$base" \
    --build-arg PUSHGW_COMMIT="$commit" -t "$image" "$root" >/dev/null ||
    fail "$engine build"
ok "built $image ($engine, base $base, run as: $mode)"

# irun [-d] [-e K=V]... [ARGS]: `docker run --rm IMAGE ARGS` with the
# host's network and the test database's socket folder ($sockdir); -d in
# the background, its pid (chroot) or name (container) in $bg.
sockdir= bg= mnt=
irun() {
    local detach=0 envs=() e
    while [ $# -gt 0 ]; do
        case $1 in
        -d) detach=1; shift ;;
        -e) envs+=("$2"); shift 2 ;;
        *) break ;;
        esac
    done
    if [ $mode = container ]; then
        local args=(--network host)
        [ -z "$sockdir" ] || args+=(-v "$sockdir:$sockdir")
        for e in "${envs[@]}"; do args+=(-e "$e"); done
        if [ $detach = 1 ]; then
            bg=pushgw-test-image-$$
            $engine run -d --name "$bg" "${args[@]}" "$image" "$@" >/dev/null
        else
            $engine run --rm "${args[@]}" "$image" "$@"
        fi
        return
    fi
    if [ -z "$mnt" ]; then
        mnt=$($engine image mount "$image") || fail "$engine image mount"
    fi
    local user ids workdir entry cmd imgenv=()
    user=$($engine image inspect -f '{{.Config.User}}' "$image")
    ids=$(awk -F: -v u="$user" '$1 == u || $3 == u {print $3 ":" $4}' "$mnt/etc/passwd")
    workdir=$($engine image inspect -f '{{.Config.WorkingDir}}' "$image")
    entry=$($engine image inspect -f '{{join .Config.Entrypoint " "}}' "$image")
    cmd=$($engine image inspect -f '{{join .Config.Cmd " "}}' "$image")
    mapfile -t imgenv < <($engine image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$image" | grep .)
    [ $# -gt 0 ] || set -- $cmd
    local script='m=$1 sock=$2 ids=$3 wd=$4; shift 4
        mount -t proc proc "$m/proc" && mount --bind /dev "$m/dev" &&
            mount -t tmpfs tmp "$m/tmp" || exit 125
        if [ -n "$sock" ]; then mkdir -p "$m$sock" && mount --bind "$sock" "$m$sock" || exit 125; fi
        cd / && exec chroot --userspec="$ids" "$m" "$@"'
    local run=(unshare -m --propagation private sh -c "$script" sh "$mnt" "$sockdir" "$ids" "$workdir"
        env -i "${imgenv[@]}" "${envs[@]}" /bin/sh -c 'cd "$0" && exec "$@"' "$workdir" $entry "$@")
    if [ $detach = 1 ]; then
        "${run[@]}" >"$tmp/serve.log" 2>&1 &
        bg=$!
    else
        "${run[@]}"
    fi
}
tmp=$(mktemp -d)
cleanup() {
    if [ -n "$bg" ]; then
        if [ $mode = container ]; then $engine rm -f "$bg" >/dev/null 2>&1 || true
        else kill -TERM "$bg" 2>/dev/null || true; fi
    fi
    [ -z "$mnt" ] || $engine image unmount "$image" >/dev/null 2>&1 || true
    [ -z "${db:-}" ] || psql "$dburl" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

out=$(irun version) || fail "version: $out"
grep -q "^pushgw .*($commit" <<<"$out" || fail "version: '$out'"
ok "docker run IMAGE version: $out"
out=$(irun check-config 2>&1) || fail "check-config: $out"
ok "docker run IMAGE check-config: $out"
set +e
out=$(irun check-config -c /nonexistent 2>&1)
rc=$?
set -e
[ $rc = 2 ] || fail "check-config of a missing file exited $rc: $out"
ok "docker run IMAGE check-config -c /nonexistent: exit 2"

dburl=${PUSHGW_TEST_DATABASE_URL:-}
if [ -z "$dburl" ] || ! command -v psql >/dev/null 2>&1; then
    echo "test-image: PUSHGW_TEST_DATABASE_URL unset (or no psql): migrate and serve not run"
    exit 0
fi
db=pushgw_image_$$
psql "$dburl" -qAtc "CREATE DATABASE $db" >/dev/null || fail "cannot create database $db"
# For a socket conninfo, its folder is mounted in.
sockdir=$(grep -oE '(^| )host=/[^ ]+' <<<"$dburl" | sed 's/.*host=//' || true)
case $dburl in
postgres://* | postgresql://*) url="${dburl%%\?*}" url="${url%/*}/$db" ;;
*) url="$dburl dbname=$db" ;;
esac
port() { echo $((20000 + RANDOM % 10000)); }
web=$(port) admin=$(port)
envs=(-e "PUSHGW_DATABASE_URL=$url" -e "PUSHGW_SERVER_LISTEN=127.0.0.1:$web"
    -e "PUSHGW_SERVER_ADMIN_LISTEN=127.0.0.1:$admin")

out=$(irun "${envs[@]}" migrate --wait 30 2>&1) || fail "migrate: $out"
ok "docker run IMAGE migrate --wait 30: $(tail -n 1 <<<"$out")"
irun -d "${envs[@]}" || fail "serve did not start"
logs() { if [ $mode = container ]; then $engine logs "$bg" 2>&1 | tail -n 20; else tail -n 20 "$tmp/serve.log"; fi; }
code=
for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz" || true)
    [ "$code" = 200 ] && break
    sleep 0.2
done
[ "$code" = 200 ] || fail "serve: /readyz answered '$code': $(logs)"
ok "docker run IMAGE (serve, the default command): /readyz 200"
if [ $mode = container ]; then
    $engine stop -t 30 "$bg" >/dev/null
    rc=$($engine inspect -f '{{.State.ExitCode}}' "$bg")
else
    kill -TERM "$bg"
    rc=0
    wait "$bg" || rc=$?
fi
bg_done=$bg bg=
[ "$rc" = 0 ] || fail "serve exited $rc on stop: $(logs)"
[ $mode = chroot ] || $engine rm -f "$bg_done" >/dev/null 2>&1 || true
ok "docker stop: serve exited 0"
