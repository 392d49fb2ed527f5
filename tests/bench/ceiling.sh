# Sourced by tests/bench/run.sh and tests/bench/apns_blast.sh (POSIX sh).
#
# h2load_ceiling BUILD ORIGIN N CONNS TOPIC BODY_FILE
#   h2load against the mock APNs at ORIGIN with the test team's JWT and
#   pushgw's headers, N requests on CONNS connections, 1000 streams each,
#   BODY_FILE as the body. Prints h2load's summary lines on stderr and the
#   req/s (an integer) on stdout; returns 1 when h2load gave no figure.
h2load_ceiling() {
    _hc_jwt=$("$1/tests/mock/mkjwt" --key "$1/tests/certs/out/AuthKey_KEY0000001.p8" \
        --team TEAM000001 --kid KEY0000001) || return 1
    _hc_out=$(h2load -n "$3" -c "$4" -m 1000 -d "$6" \
        -H "authorization: bearer $_hc_jwt" -H "apns-topic: $5" \
        -H "apns-push-type: alert" -H "apns-priority: 10" \
        "$2/3/device/0000000000000000000000000000000000000000000000000000000000000001") || return 1
    echo "$_hc_out" | grep -E "^finished in|^requests:|^status codes:" >&2
    _hc_rps=$(echo "$_hc_out" | sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' | cut -d. -f1)
    [ -n "$_hc_rps" ] || return 1
    echo "$_hc_rps"
}
