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

commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# The host's network: the build's apt-get reaches the host's mirror the
# way the host does (also inside a container, where bridges may not work).
fmt=()
[ "$engine" = podman ] && fmt=(--format docker) # keeps the HEALTHCHECK
$engine build -q --network host "${fmt[@]}" -f "$root/deploy/Dockerfile" --build-arg BASE="$base" \
    --build-arg PUSHGW_COMMIT="$commit" -t "$image" "$root" >/dev/null ||
    fail "$engine build"
ok "built $image ($engine, base $base)"

out=$($engine run --rm "$image" version) || fail "version: $out"
grep -q "^pushgw .*($commit" <<<"$out" || fail "version: '$out'"
ok "docker run IMAGE version: $out"
out=$($engine run --rm "$image" check-config 2>&1) || fail "check-config: $out"
ok "docker run IMAGE check-config: $out"
set +e
out=$($engine run --rm "$image" check-config -c /nonexistent 2>&1)
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
name=pushgw-test-image-$$
psql "$dburl" -qAtc "CREATE DATABASE $db" >/dev/null || fail "cannot create database $db"
cleanup() {
    $engine rm -f "$name" >/dev/null 2>&1 || true
    psql "$dburl" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# The host's network and, for a socket conninfo, its socket folder.
mounts=()
sockdir=$(grep -oE '(^| )host=/[^ ]+' <<<"$dburl" | sed 's/.*host=//' || true)
[ -z "$sockdir" ] || mounts=(-v "$sockdir:$sockdir")
case $dburl in
postgres://* | postgresql://*) url="${dburl%%\?*}" url="${url%/*}/$db" ;;
*) url="$dburl dbname=$db" ;;
esac
port() { echo $((20000 + RANDOM % 10000)); }
web=$(port) admin=$(port)
run=(--network host "${mounts[@]}" -e "PUSHGW_DATABASE_URL=$url"
    -e "PUSHGW_SERVER_LISTEN=127.0.0.1:$web" -e "PUSHGW_SERVER_ADMIN_LISTEN=127.0.0.1:$admin")

out=$($engine run --rm "${run[@]}" "$image" migrate --wait 30 2>&1) || fail "migrate: $out"
ok "docker run IMAGE migrate --wait 30: $(tail -n 1 <<<"$out")"
$engine run -d --name "$name" "${run[@]}" "$image" >/dev/null || fail "serve did not start"
code=
for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz" || true)
    [ "$code" = 200 ] && break
    sleep 0.2
done
[ "$code" = 200 ] || fail "serve: /readyz answered '$code': $($engine logs "$name" 2>&1 | tail -n 20)"
ok "docker run IMAGE (serve): /readyz 200"
$engine stop -t 30 "$name" >/dev/null
rc=$($engine inspect -f '{{.State.ExitCode}}' "$name")
[ "$rc" = 0 ] || fail "serve exited $rc on stop: $($engine logs "$name" 2>&1 | tail -n 20)"
ok "docker stop: serve exited 0"
