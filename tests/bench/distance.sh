# Sourced by tests/bench/run.sh (bash): the providers far away.
#
# The mocks run in a network namespace of their own, reached over a veth
# pair whose two ends delay every packet by half the round trip with
# `tc qdisc … netem` (iproute2): TCP itself sees the distance (handshakes,
# windows, slow start), as it does with Apple and Google. A kernel without
# netem (sch_netem) gets a pair of TUN devices instead, one in the
# namespace, with netdelay (tests/bench/netdelay.c, built with the bench
# tools) holding each packet for half the round trip between them: TCP sees
# that too. Without the rights for
# namespaces (a container without CAP_NET_ADMIN), the mocks run on
# loopback with their --delay-ms instead, which delays each answer but not
# the packets, and the output says so.
#
#   dist_setup WORK CERTS NETDELAY
#                           creates the namespace, the pair and a server
#                           certificate for its address (else the fallback);
#                           NETDELAY is the built netdelay binary;
#                           sets DIST_MODE (netem | tun | mock-delay),
#                           DIST_HOST
#   dist_rtt MS             sets the round trip (0: none)
#   dist_start_mocks MOCK_APNS MOCK_FCM APNS_PORT FCM_PORT
#   dist_stop_mocks
#   dist_teardown           removes what dist_setup made (idempotent)
#
# The addresses are private ones made here and removed again: 10.200.0.1
# (this side) and 10.200.0.2 (the namespace).

DIST_NS="pgwbench$$"
DIST_VETH_H="pgwb$$h"
DIST_VETH_N="pgwb$$n"
DIST_NEAR_IP=10.200.0.1
DIST_FAR_IP=10.200.0.2
DIST_MODE=
DIST_HOST=
DIST_RTT=0
DIST_CERT=
DIST_KEY=
DIST_WORK=
DIST_CERTS=
DIST_APNS_PID=
DIST_FCM_PID=
DIST_MADE=0
DIST_TUN_PID=
DIST_NETDELAY=

dist_setup() { # work certs netdelay
    DIST_WORK=$1
    DIST_CERTS=$2
    DIST_NETDELAY=$3
    if [ "${BENCH_DISTANCE_NETEM:-1}" != 0 ] && command -v ip >/dev/null && command -v tc >/dev/null &&
        ip netns add "$DIST_NS" 2>/dev/null; then
        DIST_MADE=1
        if ip link add "$DIST_VETH_H" type veth peer name "$DIST_VETH_N" &&
            ip link set "$DIST_VETH_N" netns "$DIST_NS" &&
            ip addr add "$DIST_NEAR_IP/30" dev "$DIST_VETH_H" &&
            ip link set "$DIST_VETH_H" up &&
            ip netns exec "$DIST_NS" ip addr add "$DIST_FAR_IP/30" dev "$DIST_VETH_N" &&
            ip netns exec "$DIST_NS" ip link set "$DIST_VETH_N" up &&
            ip netns exec "$DIST_NS" ip link set lo up; then
            if tc qdisc add dev "$DIST_VETH_H" root netem delay 0ms limit 1000000 2>"$DIST_WORK/tc.err" &&
                ip netns exec "$DIST_NS" tc qdisc add dev "$DIST_VETH_N" root netem delay 0ms limit 1000000 \
                    2>>"$DIST_WORK/tc.err" &&
                dist_make_cert; then
                DIST_MODE=netem
                DIST_HOST=$DIST_FAR_IP
                return 0
            fi
            echo "    tc could not add a netem qdisc ($(head -n 1 "$DIST_WORK/tc.err")):" \
                "the packets are delayed by netdelay between two TUN devices" >&2
            ip link del "$DIST_VETH_H" 2>/dev/null || true
            if dist_setup_tun && dist_make_cert; then
                DIST_MODE=tun
                DIST_HOST=$DIST_FAR_IP
                return 0
            fi
            echo "    could not set up the TUN devices: falling back to the mocks' --delay-ms," \
                "which TCP does not see" >&2
        else
            echo "    could not set up the veth pair: falling back to the mocks' --delay-ms," \
                "which TCP does not see" >&2
        fi
        dist_teardown
    else
        echo "    no network namespace or tc here (needs root / CAP_NET_ADMIN and iproute2):" \
            "falling back to the mocks' --delay-ms, which TCP does not see" >&2
    fi
    DIST_MODE=mock-delay
    DIST_HOST=127.0.0.1
    DIST_CERT=$DIST_CERTS/server.pem
    DIST_KEY=$DIST_CERTS/server.key
}

# TUN_A here, TUN_B in the namespace, netdelay between them. The MTU is
# the Internet's 1500 (BENCH_TUN_MTU for another), so TCP's segments,
# initial windows and receive-window growth are a real path's; netdelay
# takes the kernel's segmentation offload, so it still moves few, large
# packets. With an MTU of 65000 the receiver's window started at one
# 64 KiB segment and grew slowly: pushgw's connections were limited by it
# (ss: rwnd_limited) most of their time at 50 ms, which no real path does.
# A queue of 10,000 packets per device: a real path does not drop at this
# rate, and the default 500 dropped bursts before netdelay read them.
dist_setup_tun() {
    [ -x "$DIST_NETDELAY" ] && [ -c /dev/net/tun ] || return 1
    echo 0 >"$DIST_WORK/delay_ms"
    "$DIST_NETDELAY" "$DIST_VETH_H" "$DIST_VETH_N" "$DIST_WORK/delay_ms" \
        >"$DIST_WORK/netdelay.out" 2>&1 &
    DIST_TUN_PID=$!
    for _ in $(seq 1 200); do
        grep -q ready "$DIST_WORK/netdelay.out" 2>/dev/null && break
        kill -0 "$DIST_TUN_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    ip link set "$DIST_VETH_N" netns "$DIST_NS" &&
        ip addr add "$DIST_NEAR_IP" peer "$DIST_FAR_IP" dev "$DIST_VETH_H" &&
        ip link set "$DIST_VETH_H" mtu "${BENCH_TUN_MTU:-1500}" txqueuelen 10000 up &&
        ip netns exec "$DIST_NS" ip addr add "$DIST_FAR_IP" peer "$DIST_NEAR_IP" dev "$DIST_VETH_N" &&
        ip netns exec "$DIST_NS" ip link set "$DIST_VETH_N" mtu "${BENCH_TUN_MTU:-1500}" txqueuelen 10000 up ||
        return 1
    # BENCH_DISTANCE_CC: another congestion control on this path's routes
    # only (both ends), to compare with the kernel's default; unset, none.
    if [ -n "${BENCH_DISTANCE_CC:-}" ]; then
        ip route replace "$DIST_FAR_IP" dev "$DIST_VETH_H" src "$DIST_NEAR_IP" \
            congctl "$BENCH_DISTANCE_CC" &&
            ip netns exec "$DIST_NS" ip route replace "$DIST_NEAR_IP" dev "$DIST_VETH_N" \
                src "$DIST_FAR_IP" congctl "$BENCH_DISTANCE_CC" || return 1
        echo "    congestion control on the path: $BENCH_DISTANCE_CC (BENCH_DISTANCE_CC)" >&2
    fi
}

# A server certificate for the namespace's address, from the test CA.
dist_make_cert() {
    DIST_CERT=$DIST_WORK/far.pem
    DIST_KEY=$DIST_WORK/far.key
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$DIST_KEY" -subj "/CN=$DIST_FAR_IP" -out "$DIST_WORK/far.csr" 2>/dev/null &&
        printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
            "$DIST_FAR_IP" >"$DIST_WORK/far.ext" &&
        openssl x509 -req -in "$DIST_WORK/far.csr" -CA "$DIST_CERTS/ca.pem" \
            -CAkey "$DIST_CERTS/ca.key" -CAcreateserial -CAserial "$DIST_WORK/far.srl" \
            -days 2 -sha256 -extfile "$DIST_WORK/far.ext" -out "$DIST_CERT" 2>/dev/null
}

dist_rtt() { # ms
    DIST_RTT=$1
    if [ "$DIST_MODE" = tun ]; then
        awk -v r="$1" 'BEGIN { print r / 2 }' >"$DIST_WORK/delay_ms"
        kill -HUP "$DIST_TUN_PID"
        return
    fi
    [ "$DIST_MODE" = netem ] || return 0
    # half of the round trip on each way
    local half
    half=$(awk -v r="$1" 'BEGIN { printf "%.1fms", r / 2 }')
    tc qdisc change dev "$DIST_VETH_H" root netem delay "$half" limit 1000000 &&
        ip netns exec "$DIST_NS" tc qdisc change dev "$DIST_VETH_N" root netem delay "$half" limit 1000000
}

dist_start_mocks() { # mock_apns mock_fcm apns_port fcm_port
    local run=() delay=()
    if [ "$DIST_MODE" = netem ] || [ "$DIST_MODE" = tun ]; then
        run=(ip netns exec "$DIST_NS")
    elif [ "$DIST_RTT" -gt 0 ]; then
        delay=(--delay-ms "$DIST_RTT")
    fi
    "${run[@]}" "$1" --listen "$DIST_HOST:$3" --quiet --cert "$DIST_CERT" --key "$DIST_KEY" \
        --topic com.example.demo \
        --team "TEAM000001:KEY0000001:$DIST_CERTS/AuthKey_KEY0000001.pub.pem" \
        "${delay[@]}" 2>>"$DIST_WORK/mock_apns_far.log" &
    DIST_APNS_PID=$!
    "${run[@]}" "$2" --listen "$DIST_HOST:$4" --quiet --cert "$DIST_CERT" --key "$DIST_KEY" \
        --service-account-pub "$DIST_CERTS/fcm-sa.pub.pem" \
        --client-email pushgw@pushgw-test.iam.gserviceaccount.com --project pushgw-test \
        "${delay[@]}" 2>>"$DIST_WORK/mock_fcm_far.log" &
    DIST_FCM_PID=$!
    for _ in $(seq 1 200); do
        if curl -s --cacert "$DIST_CERTS/ca.pem" --http2 -o /dev/null "https://$DIST_HOST:$3/_mock/stats" &&
            curl -s --cacert "$DIST_CERTS/ca.pem" --http2 -o /dev/null "https://$DIST_HOST:$4/_mock/stats"; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

dist_stop_mocks() {
    local p
    for p in $DIST_APNS_PID $DIST_FCM_PID; do
        kill "$p" 2>/dev/null || continue
        for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null || true
    done
    DIST_APNS_PID=
    DIST_FCM_PID=
}

dist_teardown() {
    dist_stop_mocks
    if [ -n "$DIST_TUN_PID" ]; then
        # what the devices' queues dropped before netdelay read it (the
        # devices go with netdelay)
        echo "    TUN devices: dropped on a full queue $(cat "/sys/class/net/$DIST_VETH_H/statistics/tx_dropped" 2>/dev/null || echo '?')" \
            "(this side), $(ip netns exec "$DIST_NS" cat "/sys/class/net/$DIST_VETH_N/statistics/tx_dropped" 2>/dev/null || echo '?')" \
            "(the namespace)" >&2
        kill "$DIST_TUN_PID" 2>/dev/null || true
        wait "$DIST_TUN_PID" 2>/dev/null || true
        DIST_TUN_PID=
        # what it forwarded and dropped
        sed -n 's/^netdelay: /    netdelay: /p' "$DIST_WORK/netdelay.out" >&2
    fi
    [ "$DIST_MADE" = 1 ] || return 0
    ip link del "$DIST_VETH_H" 2>/dev/null || true
    ip netns del "$DIST_NS" 2>/dev/null || true
    DIST_MADE=0
}
