/*
 * Delays IP packets between two TUN devices: a wire of a given length.
 *
 *   netdelay TUN_A TUN_B DELAY_FILE
 *
 * Creates TUN_A and TUN_B (no packet information header), prints "ready"
 * on stdout once both exist, then copies every packet read from one to the
 * other, each after the one-way delay in milliseconds that DELAY_FILE holds
 * (read at start and again on SIGHUP; packets already on the wire keep
 * theirs). tests/bench/distance.sh moves TUN_B into a network namespace, so
 * the kernel's TCP on both sides sees the round trip: for kernels without
 * tc's netem. Runs until SIGTERM or SIGINT, then prints what it forwarded
 * and dropped on stderr and exits 0.
 *
 * Structure: one thread, one epoll set holding the two TUN fds, a signalfd
 * and one timerfd per direction. Each direction is a FIFO (every packet of
 * it gets the same delay, so release times only grow, and packets stay in
 * order as on a wire) kept in a byte ring of fixed size: the memory is
 * bounded, and a packet that does not fit is dropped and counted, as a
 * full link would drop it. Each direction's timerfd is armed, in absolute
 * monotonic time, for the release of its FIFO's head.
 *
 * Both devices take segmentation and checksum offload (IFF_VNET_HDR,
 * TUNSETOFFLOAD), as a veth does: with the Internet's MTU of 1500 on the
 * devices, TCP on both sides works with a 1448-byte MSS (its windows, its
 * initial window, its ACK clock are a real path's), while the kernel hands
 * over each burst as one segmentation-offload packet of up to 64 KiB with
 * its virtio-net header, which is written to the other device unchanged.
 * Packet for packet of MSS size, the delayer's copies and system calls
 * would cost more than the traffic they carry and bound the rate near and
 * far alike.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/*
 * Bytes queued per direction. At 75 ms one way (the benchmark's 150 ms
 * round trip) this holds 220 MB/s in flight, several times what the
 * benchmark sends through the gateway on this machine kind; beyond it the
 * wire drops.
 */
#define NETDELAY_QUEUE_BYTES (16u * 1024 * 1024)
/* The largest packet a TUN device hands over: a segmentation-offload
 * packet (at most 64 KiB of IP) after its virtio-net header. */
#define NETDELAY_MAX_PACKET (65536 + sizeof(struct virtio_net_hdr))
/* Packets read from one device before the loop looks at the rest. */
#define NETDELAY_READ_BATCH 256
/* Retry of a write the device refused for now (EAGAIN). */
#define NETDELAY_RETRY_NS 1000000
/* The longest one-way delay accepted from DELAY_FILE, in ms. */
#define NETDELAY_MAX_DELAY_MS 60000.0

/* A packet in a ring: this header, then len bytes, padded to REC_ALIGN. */
struct rec {
    int64_t due_ns;
    uint32_t len;
    uint32_t pad;
};
#define REC_ALIGN 16u

/*
 * One direction. The ring holds [head, tail) when not wrapped; when
 * wrapped, [head, end) then [0, tail), with tail <= head.
 */
struct wire {
    const char *name;
    int in_fd;
    int out_fd;
    int timer_fd;
    unsigned char *buf;
    size_t head;
    size_t tail;
    size_t end;
    bool wrapped;
    size_t count;
    size_t queued;
    int64_t armed_ns;
    uint64_t forwarded;
    uint64_t forwarded_bytes;
    uint64_t dropped;
    uint64_t dropped_bytes;
    uint64_t write_errors;
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static size_t rec_size(size_t len)
{
    return (sizeof(struct rec) + len + REC_ALIGN - 1) &
           ~(size_t)(REC_ALIGN - 1);
}

static int open_tun(const char *name)
{
    struct ifreq ifr;
    int fd;

    if (strlen(name) >= IFNAMSIZ) {
        fprintf(stderr, "netdelay: device name '%s' too long\n", name);
        return -1;
    }
    fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "netdelay: could not open '/dev/net/tun': %s\n",
                strerror(errno));
        return -1;
    }
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
    memcpy(ifr.ifr_name, name, strlen(name));
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        fprintf(stderr, "netdelay: could not create '%s': %s\n", name,
                strerror(errno));
        close(fd);
        return -1;
    }
    if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) {
        fprintf(stderr, "netdelay: no offloads on '%s': %s\n", name,
                strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * Reads the one-way delay in ms from |path| into |ret_ns|; an empty file
 * is 0. Returns -1, leaving |ret_ns| alone, when the file cannot be read
 * or holds no delay between 0 and NETDELAY_MAX_DELAY_MS.
 */
static int read_delay(const char *path, int64_t *ret_ns)
{
    char text[64];
    char *endp;
    double ms;
    ssize_t n;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "netdelay: could not open '%s': %s\n", path,
                strerror(errno));
        return -1;
    }
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n < 0) {
        fprintf(stderr, "netdelay: could not read '%s': %s\n", path,
                strerror(errno));
        return -1;
    }
    text[n] = '\0';
    errno = 0;
    ms = strtod(text, &endp);
    if (endp == text) {
        ms = 0;
    }
    while (*endp == ' ' || *endp == '\t' || *endp == '\n' || *endp == '\r') {
        endp++;
    }
    if (errno != 0 || *endp != '\0' || !isfinite(ms) || ms < 0 ||
        ms > NETDELAY_MAX_DELAY_MS) {
        fprintf(stderr,
                "netdelay: '%s' holds no delay in ms between 0 and %.0f\n",
                path, NETDELAY_MAX_DELAY_MS);
        return -1;
    }
    *ret_ns = llround(ms * 1e6);
    return 0;
}

/* Queues |len| bytes of |pkt| due at |due_ns|; false when the ring is full. */
static bool wire_push(struct wire *w, const unsigned char *pkt, size_t len,
                      int64_t due_ns)
{
    size_t need = rec_size(len);
    struct rec r = {.due_ns = due_ns, .len = (uint32_t)len, .pad = 0};
    size_t at;

    if (w->count == 0) {
        w->head = w->tail = 0;
        w->wrapped = false;
    }
    if (!w->wrapped) {
        if (NETDELAY_QUEUE_BYTES - w->tail >= need) {
            at = w->tail;
        } else if (w->head >= need) {
            w->end = w->tail;
            w->wrapped = true;
            at = 0;
        } else {
            return false;
        }
    } else if (w->head - w->tail >= need) {
        at = w->tail;
    } else {
        return false;
    }
    memcpy(w->buf + at, &r, sizeof(r));
    memcpy(w->buf + at + sizeof(r), pkt, len);
    w->tail = at + need;
    w->count++;
    w->queued += need;
    return true;
}

static struct rec wire_front(const struct wire *w)
{
    struct rec r;

    memcpy(&r, w->buf + w->head, sizeof(r));
    return r;
}

static void wire_pop(struct wire *w, size_t len)
{
    size_t size = rec_size(len);

    w->head += size;
    w->count--;
    w->queued -= size;
    if (w->wrapped && w->head == w->end) {
        w->head = 0;
        w->wrapped = false;
    }
    if (w->count == 0) {
        w->head = w->tail = 0;
        w->wrapped = false;
    }
}

/* Arms |w|'s timer for its head's release, or disarms it when empty. */
static int wire_arm(struct wire *w, int64_t at_ns)
{
    struct itimerspec its;

    if (at_ns == w->armed_ns) {
        return 0;
    }
    memset(&its, 0, sizeof(its));
    if (at_ns > 0) {
        its.it_value.tv_sec = at_ns / 1000000000;
        its.it_value.tv_nsec = at_ns % 1000000000;
    }
    if (timerfd_settime(w->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
        fprintf(stderr, "netdelay: could not arm the timer: %s\n",
                strerror(errno));
        return -1;
    }
    w->armed_ns = at_ns;
    return 0;
}

/* Writes the packets of |w| that are due; arms the timer for the rest. */
static int wire_release(struct wire *w)
{
    int64_t now = now_ns();

    while (w->count > 0) {
        struct rec r = wire_front(w);
        ssize_t n;

        if (r.due_ns > now) {
            return wire_arm(w, r.due_ns);
        }
        n = write(w->out_fd, w->buf + w->head + sizeof(r), r.len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return wire_arm(w, now + NETDELAY_RETRY_NS);
        }
        if (n < 0) {
            /* the device is down or gone: the packet is lost */
            w->write_errors++;
        } else {
            w->forwarded++;
            w->forwarded_bytes += r.len;
        }
        wire_pop(w, r.len);
    }
    return wire_arm(w, 0);
}

/* Reads a batch of packets from |w|'s input into its ring. */
static int wire_intake(struct wire *w, int64_t delay_ns, unsigned char *scratch)
{
    int64_t due = now_ns() + delay_ns;
    bool was_empty = w->count == 0;
    int i;

    for (i = 0; i < NETDELAY_READ_BATCH; i++) {
        ssize_t n = read(w->in_fd, scratch, NETDELAY_MAX_PACKET);

        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                break;
            }
            fprintf(stderr, "netdelay: could not read from '%s': %s\n", w->name,
                    strerror(errno));
            return -1;
        }
        if (n == 0) {
            break;
        }
        if (!wire_push(w, scratch, (size_t)n, due)) {
            w->dropped++;
            w->dropped_bytes += (uint64_t)n;
        }
    }
    if (was_empty && w->count > 0) {
        return wire_arm(w, wire_front(w).due_ns);
    }
    return 0;
}

static int epoll_add(int ep, int fd, uint64_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};

    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        fprintf(stderr, "netdelay: epoll_ctl: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

enum { TAG_TUN_A, TAG_TUN_B, TAG_TIMER_AB, TAG_TIMER_BA, TAG_SIGNAL };

int main(int argc, char **argv)
{
    struct wire wires[2];
    unsigned char *scratch = NULL;
    int64_t delay_ns = 0;
    int fd_a = -1, fd_b = -1, sig_fd = -1, ep = -1;
    bool running = true;
    sigset_t sigs;
    int rc = 1;
    int i;

    memset(wires, 0, sizeof(wires));
    wires[0].timer_fd = wires[1].timer_fd = -1;
    if (argc != 4) {
        fprintf(stderr, "usage: netdelay TUN_A TUN_B DELAY_FILE\n");
        return 2;
    }
    if (read_delay(argv[3], &delay_ns) < 0) {
        goto out;
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0) {
        goto out;
    }
    sig_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    fd_a = open_tun(argv[1]);
    fd_b = open_tun(argv[2]);
    ep = epoll_create1(EPOLL_CLOEXEC);
    scratch = malloc(NETDELAY_MAX_PACKET);
    if (sig_fd < 0 || fd_a < 0 || fd_b < 0 || ep < 0 || scratch == NULL) {
        fprintf(stderr, "netdelay: could not set up\n");
        goto out;
    }
    wires[0] = (struct wire){.name = argv[1], .in_fd = fd_a, .out_fd = fd_b};
    wires[1] = (struct wire){.name = argv[2], .in_fd = fd_b, .out_fd = fd_a};
    for (i = 0; i < 2; i++) {
        wires[i].timer_fd =
            timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        /* pages are touched as the ring fills: idle wires stay small */
        wires[i].buf = malloc(NETDELAY_QUEUE_BYTES);
        if (wires[i].timer_fd < 0 || wires[i].buf == NULL) {
            fprintf(stderr, "netdelay: could not set up\n");
            goto out;
        }
    }
    if (epoll_add(ep, fd_a, TAG_TUN_A) < 0 ||
        epoll_add(ep, fd_b, TAG_TUN_B) < 0 ||
        epoll_add(ep, wires[0].timer_fd, TAG_TIMER_AB) < 0 ||
        epoll_add(ep, wires[1].timer_fd, TAG_TIMER_BA) < 0 ||
        epoll_add(ep, sig_fd, TAG_SIGNAL) < 0) {
        goto out;
    }
    printf("ready\n");
    fflush(stdout);

    while (running) {
        struct epoll_event evs[8];
        int n = epoll_wait(ep, evs, 8, -1);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "netdelay: epoll_wait: %s\n", strerror(errno));
            goto out;
        }
        for (i = 0; i < n; i++) {
            struct signalfd_siginfo si;
            uint64_t expirations;

            switch (evs[i].data.u64) {
            case TAG_TUN_A:
            case TAG_TUN_B:
                if (wire_intake(&wires[evs[i].data.u64 == TAG_TUN_A ? 0 : 1],
                                delay_ns, scratch) < 0) {
                    goto out;
                }
                break;
            case TAG_TIMER_AB:
            case TAG_TIMER_BA:
                /* the timer is re-armed below: only its count is read */
                if (read(
                        wires[evs[i].data.u64 == TAG_TIMER_AB ? 0 : 1].timer_fd,
                        &expirations, sizeof(expirations)) < 0 &&
                    errno != EAGAIN) {
                    goto out;
                }
                wires[evs[i].data.u64 == TAG_TIMER_AB ? 0 : 1].armed_ns = 0;
                break;
            case TAG_SIGNAL:
                while (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                    if (si.ssi_signo == SIGHUP) {
                        /* on a bad file the old delay stays */
                        read_delay(argv[3], &delay_ns);
                    } else {
                        running = false;
                    }
                }
                break;
            default:
                break;
            }
        }
        for (i = 0; i < 2; i++) {
            if (wire_release(&wires[i]) < 0) {
                goto out;
            }
        }
    }
    rc = 0;

out:
    for (i = 0; i < 2; i++) {
        if (wires[i].name != NULL) {
            fprintf(stderr,
                    "netdelay: %s -> %s: forwarded %llu packets (%llu bytes), "
                    "dropped %llu "
                    "(%llu bytes) on a full queue, %llu on write errors, %zu "
                    "still queued\n",
                    wires[i].name, wires[1 - i].name,
                    (unsigned long long)wires[i].forwarded,
                    (unsigned long long)wires[i].forwarded_bytes,
                    (unsigned long long)wires[i].dropped,
                    (unsigned long long)wires[i].dropped_bytes,
                    (unsigned long long)wires[i].write_errors, wires[i].count);
        }
        if (wires[i].timer_fd >= 0) {
            close(wires[i].timer_fd);
        }
        free(wires[i].buf);
    }
    free(scratch);
    if (ep >= 0) {
        close(ep);
    }
    if (sig_fd >= 0) {
        close(sig_fd);
    }
    if (fd_a >= 0) {
        close(fd_a);
    }
    if (fd_b >= 0) {
        close(fd_b);
    }
    return rc;
}
