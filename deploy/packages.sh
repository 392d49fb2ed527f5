# Sourced by tests/run.sh, deploy/quickstart.sh and tests/bench/run.sh: the
# Debian 12 packages pushgw needs, and an installer that adds only what is
# missing (as root, or through sudo).

PGW_BUILD_PACKAGES=(
    build-essential cmake pkg-config ca-certificates openssl
    libevent-dev libnghttp2-dev libssl-dev libcurl4-openssl-dev
    libcjson-dev libpq-dev libinih-dev libjemalloc-dev
)
PGW_TEST_PACKAGES=(
    libcmocka-dev postgresql nghttp2-client clang libclang-rt-14-dev
    clang-format git curl jq nodejs npm
    iproute2 # ip and tc: tests/bench/run.sh puts the mocks behind netem
)
PGW_RUN_PACKAGES=(postgresql curl jq)

# Node from NodeSource is one package (nodejs, npm inside) that conflicts
# with Debian's npm: a command already on PATH counts as installed.
pgw_have_command_of() {
    case "$1" in
    nodejs) command -v node >/dev/null 2>&1 ;;
    npm) command -v npm >/dev/null 2>&1 ;;
    *) return 1 ;;
    esac
}

pgw_install_packages() {
    local missing=() p
    for p in "$@"; do
        pgw_have_command_of "$p" && continue
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "missing packages (${missing[*]}) and not root: run as root or install sudo" >&2
            return 1
        }
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}

# The newest installed PostgreSQL server's bin folder.
pgw_pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] && [ -x "$d/initdb" ] || return 1
    echo "$d"
}
