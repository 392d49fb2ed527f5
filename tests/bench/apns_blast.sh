#!/bin/sh
# Runs mock_apns, then apns_blast and h2load against it in the same run,
# and prints pushes/s, h2load's req/s and the ratio.
#   tests/bench/apns_blast.sh [BUILD_DIR] [N] [CONNECTIONS]
set -eu
. "$(dirname "$0")/ceiling.sh"
BUILD=${1:-build}
N=${2:-200000}
CONNS=${3:-2}
CERTS=$BUILD/tests/certs/out
MOCK=$BUILD/tests/mock/mock_apns
BLAST=$BUILD/tests/bench/apns_blast
MKJWT=$BUILD/tests/mock/mkjwt
for f in "$MOCK" "$BLAST" "$MKJWT" "$CERTS/ca.pem"; do
    [ -e "$f" ] || { echo "apns_blast.sh: missing '$f' (build first)" >&2; exit 2; }
done
command -v h2load >/dev/null || { echo "apns_blast.sh: h2load not found (nghttp2-client)" >&2; exit 2; }

TMP=$(mktemp -d)
MOCK_PID=
cleanup() {
    [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null && wait "$MOCK_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

"$MOCK" --listen 127.0.0.1:0 --port-file "$TMP/port" --quiet \
    --cert "$CERTS/server.pem" --key "$CERTS/server.key" \
    --team "TEAM000001:KEY0000001:$CERTS/AuthKey_KEY0000001.pub.pem" \
    --topic com.example.app &
MOCK_PID=$!
i=0
while [ ! -s "$TMP/port" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
PORT=$(cat "$TMP/port")
ORIGIN="https://127.0.0.1:$PORT"

BLAST_OUT=$("$BLAST" -o "$ORIGIN" -a "$CERTS/ca.pem" \
    -k "$CERTS/AuthKey_KEY0000001.p8" -t TEAM000001 -i KEY0000001 \
    -n "$N" -c "$CONNS" -w 10000)
echo "$BLAST_OUT"
PUSHES=$(echo "$BLAST_OUT" | sed -n 's/.*pushes_per_s=\([0-9]*\).*/\1/p')

printf '%s' '{"aps":{"alert":{"title":"Jerry","body":"hello from the benchmark"},"badge":1,"sound":"default"}}' > "$TMP/body.json"
CEIL=$(h2load_ceiling "$BUILD" "$ORIGIN" "$N" "$CONNS" com.example.app "$TMP/body.json") || CEIL=
RATIO=$(awk -v a="$PUSHES" -v b="$CEIL" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }')
echo "bench apns_blast pushes_per_s=$PUSHES ceiling_per_s=$CEIL ratio=$RATIO"
