#!/usr/bin/env python3
"""Delays IP packets between two TUN devices: a wire of a given length.

    netdelay.py TUN_A TUN_B DELAY_FILE

Creates TUN_A and TUN_B (no packet information header), prints "ready" on
stdout once both exist, then copies every packet read from one to the
other, each after the one-way delay in milliseconds that DELAY_FILE holds
(read at start and again on SIGHUP; packets already on the wire keep
theirs). tests/bench/distance.sh moves TUN_B into a network namespace, so
the kernel's TCP on both sides sees the round trip: for kernels without
tc's netem. Runs until killed.
"""
import collections
import fcntl
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main():
    name_a, name_b, delay_file = sys.argv[1:4]
    fds = [open_tun(name_a), open_tun(name_b)]
    delay = [0.0]

    def read_delay(*_):
        with open(delay_file) as f:
            delay[0] = float(f.read().strip() or 0) / 1000.0

    read_delay()
    signal.signal(signal.SIGHUP, read_delay)
    # one FIFO per direction: the delay is the same for every packet of it
    wires = [collections.deque(), collections.deque()]  # to fds[0], to fds[1]
    print("ready", flush=True)
    while True:
        now = time.monotonic()
        for i in (0, 1):
            w = wires[i]
            while w and w[0][0] <= now:
                try:
                    os.write(fds[i], w[0][1])
                except BlockingIOError:
                    break
                except OSError:
                    pass  # the device is down or gone: the packet is lost
                w.popleft()
        due = [w[0][0] for w in wires if w]
        timeout = max(0.0, min(due) - time.monotonic()) if due else None
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in ready:
            out = 1 if fd == fds[0] else 0
            for _ in range(256):
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                wires[out].append((now + delay[0], pkt))


if __name__ == "__main__":
    main()
