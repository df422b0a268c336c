/*
 * loadgen.c - TFTP (RFC 1350/2347/2348/2349/7440) read load generator.
 *
 * Plain C, no Python.h.  Built on demand by bench/side_by_side.py:
 *     cc -O2 -o bench/build/loadgen bench/loadgen.c
 *
 * One thread, one epoll set, one non-blocking UDP socket per concurrent
 * transfer.  All memory (slot table, latency array, receive buffer, RRQ
 * packet) is allocated once at start; nothing is allocated per packet.
 *
 * Usage:
 *   loadgen --server 127.0.0.1 --port PORT --file NAME --size BYTES
 *           --concurrency C --transfers N [--blksize B] [--windowsize W]
 *           [--tsize] [--timeout-ms 1000] [--max-seconds 120]
 *           [--verify PATH]
 *
 * Only loopback (127.0.0.0/8) servers are accepted, and only packets whose
 * source address is the server address are looked at.
 *
 * Prints one JSON object on stdout (see bench/README.md).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OP_RRQ 1
#define OP_DATA 3
#define OP_ACK 4
#define OP_ERROR 5
#define OP_OACK 6

#define MAX_RETRIES 5
#define RECV_BUF 65536 + 64
#define DRAIN_MAX 64 /* datagrams read from one socket per wakeup */

/* ---- error kinds (counted, printed as "errors": {...}) ---------------- */
enum {
    E_TIMEOUT,        /* MAX_RETRIES retransmissions without progress     */
    E_DEADLINE,       /* still running when --max-seconds elapsed          */
    E_SERVER_ERROR,   /* server sent an ERROR packet (see server_error_N)  */
    E_VERIFY,         /* payload bytes differ from the --verify file       */
    E_SIZE,           /* total length differs from --size                  */
    E_TSIZE,          /* OACK tsize differs from --size                    */
    E_BAD_OACK,       /* OACK malformed, unasked option, or bad value      */
    E_BAD_PACKET,     /* short/unknown opcode/oversized DATA               */
    E_SOCKET,         /* socket()/bind()/sendto() failure                  */
    E_KINDS
};
static const char *e_names[E_KINDS] = {
    "timeout", "deadline", "server_error", "verify_mismatch", "size_mismatch",
    "tsize_mismatch", "bad_oack", "bad_packet", "socket",
};
/* events that are not failures, but are worth seeing */
static uint64_t n_unknown_tid;   /* datagrams from a second server TID (answered ERROR 5) */
static uint64_t n_foreign;       /* datagrams from an address other than the server     */
static uint64_t n_dup_data;      /* DATA blocks already received                        */
static uint64_t n_gap;           /* DATA blocks ahead of the next expected one          */
static uint64_t n_oack_repeat;   /* repeated OACK (our ACK 0 was lost or late)          */
static uint64_t n_dup_acks;      /* ACKs re-sent because of duplicates/gaps             */

static uint64_t errs[E_KINDS];
static uint64_t server_err_code[9]; /* 0..7 standard, 8 = RFC 2347 option refusal / other */
static char last_server_msg[128];

/* ---- configuration ----------------------------------------------------- */
static struct sockaddr_in srv;
static const char *fname;
static uint64_t expect_size;
static int conc = 1;
static uint64_t ntransfers = 1;
static int opt_blksize, opt_window, opt_tsize;
static int timeout_ms = 1000;
static double max_seconds = 120.0;
static const unsigned char *vmap; /* mmap of --verify file, or NULL */
static uint64_t vsize;

static unsigned char rrq[600];
static size_t rrq_len;

/* ---- per-transfer slot ------------------------------------------------- */
enum { S_FREE = 0, S_WAIT_FIRST, S_DATA };

struct slot {
    int fd;
    int state;
    int idx;
    uint16_t tid;          /* server transfer port (network order), 0 = unknown */
    int blksize;           /* negotiated */
    int window;            /* negotiated */
    int retries;
    int in_window;         /* in-order blocks since our last ACK */
    int nack_pending;      /* we already sent an ACK for the current gap/dup burst */
    uint64_t nblk;         /* number of blocks received in order */
    uint64_t bytes;        /* payload bytes received in order */
    double t_start;
    double deadline;
    struct slot *tprev, *tnext; /* timer list, ordered by deadline */
};

static struct slot *slots;
static struct slot timer_head; /* sentinel of a circular list */

static int neg_bs_min = 1 << 30, neg_bs_max, neg_ws_min = 1 << 30, neg_ws_max; /* over successful transfers */
static double *lat;          /* latencies of successful transfers, seconds */
static uint64_t n_ok, n_fail, n_started, bytes_ok, n_retx;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Constant timeout => appending at the tail keeps the list sorted. */
static void timer_unlink(struct slot *s)
{
    if (s->tnext) {
        s->tprev->tnext = s->tnext;
        s->tnext->tprev = s->tprev;
        s->tnext = s->tprev = NULL;
    }
}
static void timer_arm(struct slot *s, double now)
{
    timer_unlink(s);
    s->deadline = now + timeout_ms / 1000.0;
    s->tprev = timer_head.tprev;
    s->tnext = &timer_head;
    timer_head.tprev->tnext = s;
    timer_head.tprev = s;
}

static int send_to_tid(struct slot *s, const void *p, size_t n, uint16_t port)
{
    struct sockaddr_in to = srv;
    to.sin_port = port;
    for (;;) {
        ssize_t r = sendto(s->fd, p, n, 0, (struct sockaddr *)&to, sizeof to);
        if (r >= 0)
            return 0;
        if (errno == EINTR)
            continue;
        /* EAGAIN/ENOBUFS: treat as lost, the timer will retransmit */
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS ||
            errno == ECONNREFUSED)
            return 0;
        return -1;
    }
}

static int acked; /* set by send_ack, read by the drain loop */

static int send_ack(struct slot *s)
{
    acked = 1;
    unsigned char a[4];
    uint16_t b = (uint16_t)(s->nblk & 0xffff);
    a[0] = 0; a[1] = OP_ACK; a[2] = b >> 8; a[3] = b & 0xff;
    s->in_window = 0;
    return send_to_tid(s, a, 4, s->tid);
}

static void send_error(struct slot *s, uint16_t port, int code, const char *msg)
{
    unsigned char e[80];
    size_t ml = strlen(msg);
    if (ml > 70) ml = 70;
    e[0] = 0; e[1] = OP_ERROR; e[2] = 0; e[3] = (unsigned char)code;
    memcpy(e + 4, msg, ml);
    e[4 + ml] = 0;
    (void)send_to_tid(s, e, 5 + ml, port);
}

static void start_transfer(struct slot *s, int epfd, double now);

static void finish(struct slot *s, int epfd, int ok, int ekind, double now)
{
    timer_unlink(s);
    epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
    s->state = S_FREE;
    if (ok) {
        if (s->blksize < neg_bs_min) neg_bs_min = s->blksize;
        if (s->blksize > neg_bs_max) neg_bs_max = s->blksize;
        if (s->window < neg_ws_min) neg_ws_min = s->window;
        if (s->window > neg_ws_max) neg_ws_max = s->window;
        lat[n_ok++] = now_s() - s->t_start;
        bytes_ok += s->bytes;
    } else {
        n_fail++;
        errs[ekind]++;
    }
    if (n_started < ntransfers)
        start_transfer(s, epfd, now);
}

static void start_transfer(struct slot *s, int epfd, double now)
{
    memset(s, 0, sizeof *s);
    s->idx = (int)(s - slots);
    s->fd = -1;
    n_started++;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        n_fail++; errs[E_SOCKET]++;
        return;
    }
    int rb = 1 << 20; /* a 1 MiB window at blksize 65464: past net.core.rmem_max as root */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    struct sockaddr_in me = {.sin_family = AF_INET};
    me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0) {
        close(fd);
        n_fail++; errs[E_SOCKET]++;
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)s->idx};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        n_fail++; errs[E_SOCKET]++;
        return;
    }
    s->fd = fd;
    s->state = S_WAIT_FIRST;
    s->blksize = 512;
    s->window = 1;
    s->t_start = now_s();
    if (send_to_tid(s, rrq, rrq_len, srv.sin_port) < 0) {
        finish(s, epfd, 0, E_SOCKET, now);
        return;
    }
    timer_arm(s, now);
}

/* Parse an OACK; returns 0 on success, -1 on a bad/unasked option. */
static int parse_oack(struct slot *s, const unsigned char *p, size_t n)
{
    size_t i = 2;
    int bs = 512, ws = 1;
    while (i < n) {
        const char *name = (const char *)p + i;
        const void *z = memchr(p + i, 0, n - i);
        if (!z) return -1;
        i = (const unsigned char *)z - p + 1;
        if (i >= n) return -1;
        const char *val = (const char *)p + i;
        z = memchr(p + i, 0, n - i);
        if (!z) return -1;
        i = (const unsigned char *)z - p + 1;
        char *end;
        unsigned long long v = strtoull(val, &end, 10);
        if (*val == 0 || *end != 0) return -1;
        if (strcasecmp(name, "blksize") == 0) {
            if (!opt_blksize || v < 8 || v > (unsigned long long)opt_blksize) return -1;
            bs = (int)v;
        } else if (strcasecmp(name, "windowsize") == 0) {
            if (!opt_window || v < 1 || v > (unsigned long long)opt_window) return -1;
            ws = (int)v;
        } else if (strcasecmp(name, "tsize") == 0) {
            if (!opt_tsize) return -1;
            if (v != expect_size) return -2;
        } else {
            return -1;
        }
    }
    s->blksize = bs;
    s->window = ws;
    return 0;
}

static void on_datagram(struct slot *s, int epfd, const unsigned char *p, size_t n,
                        uint16_t from_port, double now)
{
    int op = n >= 2 ? (p[0] << 8) | p[1] : -1;

    if (s->tid == 0) {
        s->tid = from_port;
    } else if (from_port != s->tid) {
        /* RFC 1350: a packet from a different TID gets ERROR 5, transfer goes on */
        n_unknown_tid++;
        if (op != OP_ERROR)
            send_error(s, from_port, 5, "Unknown transfer ID");
        return;
    }
    if (n < 4) { finish(s, epfd, 0, E_BAD_PACKET, now); return; }

    switch (op) {
    case OP_ERROR: {
        int code = (p[2] << 8) | p[3];
        server_err_code[code > 8 ? 8 : code]++;
        size_t ml = n - 4 < sizeof last_server_msg - 1 ? n - 4 : sizeof last_server_msg - 1;
        memcpy(last_server_msg, p + 4, ml);
        last_server_msg[ml] = 0;
        finish(s, epfd, 0, E_SERVER_ERROR, now);
        return;
    }
    case OP_OACK: {
        if (s->state == S_DATA) {
            if (s->nblk == 0) { /* our ACK 0 was lost: the server repeats the OACK */
                n_oack_repeat++;
                send_ack(s);
                timer_arm(s, now);
            } else {
                n_oack_repeat++;
            }
            return;
        }
        if (!(opt_blksize || opt_window || opt_tsize)) {
            send_error(s, s->tid, 8, "no options were requested");
            finish(s, epfd, 0, E_BAD_OACK, now);
            return;
        }
        int r = parse_oack(s, p, n);
        if (r < 0) {
            send_error(s, s->tid, 8, "bad option acknowledgement");
            if (r == -2) finish(s, epfd, 0, E_TSIZE, now);
            else finish(s, epfd, 0, E_BAD_OACK, now);
            return;
        }
        s->state = S_DATA;
        s->retries = 0;
        if (send_ack(s) < 0) { finish(s, epfd, 0, E_SOCKET, now); return; }
        timer_arm(s, now);
        return;
    }
    case OP_DATA: {
        if (s->state == S_WAIT_FIRST) {
            /* no OACK: server ignored all options -> RFC 1350 lock-step, 512 bytes */
            s->state = S_DATA;
            s->blksize = 512;
            s->window = 1;
        }
        uint16_t blk = (uint16_t)((p[2] << 8) | p[3]);
        uint16_t want = (uint16_t)((s->nblk + 1) & 0xffff);
        size_t len = n - 4;
        if (blk != want) {
            uint16_t behind = (uint16_t)(want - blk); /* 1 = the last block we have */
            if (behind >= 1 && behind <= 0x8000) n_dup_data++;
            else n_gap++;
            /* Re-ACK the last in-order block once per burst (RFC 7440 on a gap;
               for lock-step a duplicate DATA means our ACK was lost). */
            if (!s->nack_pending) {
                s->nack_pending = 1;
                n_dup_acks++;
                send_ack(s);
            }
            return;
        }
        if (len > (size_t)s->blksize) {
            send_error(s, s->tid, 4, "DATA larger than blksize");
            finish(s, epfd, 0, E_BAD_PACKET, now);
            return;
        }
        uint64_t off = s->nblk * (uint64_t)s->blksize;
        if (off + len > expect_size) {
            send_error(s, s->tid, 3, "more data than expected");
            finish(s, epfd, 0, E_SIZE, now);
            return;
        }
        if (vmap && memcmp(vmap + off, p + 4, len) != 0) {
            send_error(s, s->tid, 0, "verify mismatch");
            finish(s, epfd, 0, E_VERIFY, now);
            return;
        }
        s->nblk++;
        s->bytes += len;
        s->retries = 0;
        s->nack_pending = 0;
        s->in_window++;
        if (len < (size_t)s->blksize) { /* final block */
            send_ack(s);
            if (s->bytes != expect_size) finish(s, epfd, 0, E_SIZE, now);
            else finish(s, epfd, 1, 0, now);
            return;
        }
        if (s->in_window >= s->window) {
            if (send_ack(s) < 0) { finish(s, epfd, 0, E_SOCKET, now); return; }
        }
        timer_arm(s, now);
        return;
    }
    default:
        send_error(s, s->tid, 4, "unexpected opcode");
        finish(s, epfd, 0, E_BAD_PACKET, now);
        return;
    }
}

static void on_timeout(struct slot *s, int epfd, double now)
{
    if (s->retries >= MAX_RETRIES) {
        if (s->tid) send_error(s, s->tid, 0, "timeout");
        finish(s, epfd, 0, E_TIMEOUT, now);
        return;
    }
    s->retries++;
    n_retx++;
    s->nack_pending = 0;
    int r;
    if (s->state == S_WAIT_FIRST)
        r = send_to_tid(s, rrq, rrq_len, srv.sin_port);
    else
        r = send_ack(s);
    if (r < 0) { finish(s, epfd, 0, E_SOCKET, now); return; }
    timer_arm(s, now);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double pct(double q)
{
    if (n_ok == 0) return 0;
    uint64_t i = (uint64_t)(q * (double)(n_ok - 1) + 0.5);
    if (i >= n_ok) i = n_ok - 1;
    return lat[i] * 1000.0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --server 127.0.0.1 --port PORT --file NAME --size BYTES\n"
            "               --concurrency C --transfers N [--blksize B] [--windowsize W]\n"
            "               [--tsize] [--timeout-ms 1000] [--max-seconds 120] [--verify PATH]\n");
    exit(2);
}

static long long num_arg(const char *v, long long lo, long long hi, const char *name)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *v == 0 || *end != 0 || x < lo || x > hi) {
        fprintf(stderr, "loadgen: bad value for %s: %s\n", name, v);
        exit(2);
    }
    return x;
}

int main(int argc, char **argv)
{
    const char *server = NULL, *verify = NULL;
    int port = -1;
    int have_size = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), (char *)0))
        if (!strcmp(a, "--server")) server = NEXT();
        else if (!strcmp(a, "--port")) port = (int)num_arg(NEXT(), 1, 65535, a);
        else if (!strcmp(a, "--file")) fname = NEXT();
        else if (!strcmp(a, "--size")) { expect_size = (uint64_t)num_arg(NEXT(), 0, (1LL << 50), a); have_size = 1; }
        else if (!strcmp(a, "--concurrency")) conc = (int)num_arg(NEXT(), 1, 60000, a);
        else if (!strcmp(a, "--transfers")) ntransfers = (uint64_t)num_arg(NEXT(), 1, 100000000, a);
        else if (!strcmp(a, "--blksize")) opt_blksize = (int)num_arg(NEXT(), 8, 65464, a);
        else if (!strcmp(a, "--windowsize")) opt_window = (int)num_arg(NEXT(), 1, 65535, a);
        else if (!strcmp(a, "--tsize")) opt_tsize = 1;
        else if (!strcmp(a, "--timeout-ms")) timeout_ms = (int)num_arg(NEXT(), 1, 600000, a);
        else if (!strcmp(a, "--max-seconds")) max_seconds = (double)num_arg(NEXT(), 1, 86400, a);
        else if (!strcmp(a, "--verify")) verify = NEXT();
        else usage();
    }
    if (!server || port < 0 || !fname || !have_size) usage();

    srv.sin_family = AF_INET;
    srv.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, server, &srv.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --server must be an IPv4 address\n");
        return 2;
    }
    if ((ntohl(srv.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "loadgen: refusing --server %s: only 127.0.0.0/8 is allowed\n", server);
        return 2;
    }
    if ((uint64_t)conc > ntransfers) conc = (int)ntransfers;

    if (verify) {
        int vfd = open(verify, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (vfd < 0 || fstat(vfd, &st) < 0) { perror("loadgen: --verify"); return 2; }
        vsize = (uint64_t)st.st_size;
        if (vsize != expect_size) {
            fprintf(stderr, "loadgen: --verify file is %llu bytes, --size says %llu\n",
                    (unsigned long long)vsize, (unsigned long long)expect_size);
            return 2;
        }
        if (vsize) {
            vmap = mmap(NULL, vsize, PROT_READ, MAP_SHARED | MAP_POPULATE, vfd, 0);
            if (vmap == MAP_FAILED) { perror("loadgen: mmap"); return 2; }
        } else {
            vmap = (const unsigned char *)""; /* nothing to compare */
        }
        close(vfd);
    }

    /* Build the RRQ once: opcode, filename, "octet", options. */
    {
        size_t fl = strlen(fname);
        if (fl == 0 || fl > 400) { fprintf(stderr, "loadgen: bad --file\n"); return 2; }
        unsigned char *q = rrq;
        *q++ = 0; *q++ = OP_RRQ;
        memcpy(q, fname, fl + 1); q += fl + 1;
        memcpy(q, "octet", 6); q += 6;
        char tmp[32];
        int k;
        if (opt_blksize) {
            memcpy(q, "blksize", 8); q += 8;
            k = snprintf(tmp, sizeof tmp, "%d", opt_blksize); memcpy(q, tmp, k + 1); q += k + 1;
        }
        if (opt_tsize) { memcpy(q, "tsize\0" "0", 8); q += 8; }
        if (opt_window) {
            memcpy(q, "windowsize", 11); q += 11;
            k = snprintf(tmp, sizeof tmp, "%d", opt_window); memcpy(q, tmp, k + 1); q += k + 1;
        }
        rrq_len = (size_t)(q - rrq);
    }

    /* Raise the fd limit if needed (one socket per concurrent transfer). */
    {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)conc + 64) {
            rl.rlim_cur = rl.rlim_max < (rlim_t)conc + 64 ? rl.rlim_max : (rlim_t)conc + 64;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }

    slots = calloc((size_t)conc, sizeof *slots);
    lat = calloc((size_t)ntransfers, sizeof *lat);
    unsigned char *buf = malloc(RECV_BUF);
    struct epoll_event *evs = calloc(256, sizeof *evs);
    if (!slots || !lat || !buf || !evs) { fprintf(stderr, "loadgen: out of memory\n"); return 2; }
    timer_head.tnext = timer_head.tprev = &timer_head;

    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) { perror("loadgen: epoll_create1"); return 2; }

    double t0 = now_s();
    double t_end = t0 + max_seconds;
    for (int i = 0; i < conc; i++) {
        slots[i].fd = -1;
        start_transfer(&slots[i], epfd, t0);
    }

    for (;;) {
        if (n_ok + n_fail >= ntransfers) break;
        double now = now_s();
        if (now >= t_end) break;
        double wake = t_end;
        if (timer_head.tnext != &timer_head && timer_head.tnext->deadline < wake)
            wake = timer_head.tnext->deadline;
        int tmo = (int)((wake - now) * 1000.0) + 1;
        if (tmo < 0) tmo = 0;
        int ne = epoll_wait(epfd, evs, 256, tmo);
        if (ne < 0) {
            if (errno == EINTR) continue;
            perror("loadgen: epoll_wait");
            break;
        }
        now = now_s();
        for (int e = 0; e < ne; e++) {
            struct slot *s = &slots[evs[e].data.u32];
            for (int d = 0; d < DRAIN_MAX && s->state != S_FREE; d++) {
                struct sockaddr_in from;
                socklen_t fl = sizeof from;
                int fd = s->fd;
                ssize_t r = recvfrom(fd, buf, RECV_BUF, 0, (struct sockaddr *)&from, &fl);
                if (r < 0) {
                    if (errno == EINTR) continue;
                    break; /* EAGAIN, or ICMP-induced ECONNREFUSED: let the timer act */
                }
                if (from.sin_family != AF_INET || from.sin_addr.s_addr != srv.sin_addr.s_addr) {
                    n_foreign++;
                    continue;
                }
                uint64_t before = n_started;
                acked = 0;
                on_datagram(s, epfd, buf, (size_t)r, from.sin_port, now);
                if (n_started != before || s->fd != fd) break; /* slot was recycled */
                /* After an ACK nothing more is due until the server reacts: skip the
                   recvfrom that would only return EAGAIN (level-triggered epoll reports
                   anything that did arrive meanwhile). */
                if (acked) break;
            }
        }
        now = now_s();
        while (timer_head.tnext != &timer_head && timer_head.tnext->deadline <= now)
            on_timeout(timer_head.tnext, epfd, now);
    }

    double t1 = now_s();
    /* Whatever is still running (or never started) at the deadline failed. */
    for (int i = 0; i < conc; i++) {
        if (slots[i].state != S_FREE) {
            timer_unlink(&slots[i]);
            close(slots[i].fd);
            slots[i].state = S_FREE;
            n_fail++;
            errs[E_DEADLINE]++;
        }
    }
    if (n_started < ntransfers) {
        errs[E_DEADLINE] += ntransfers - n_started;
        n_fail += ntransfers - n_started;
    }

    qsort(lat, n_ok, sizeof *lat, cmp_d);
    double secs = t1 - t0;
    if (secs <= 0) secs = 1e-9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
                 ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;

    printf("{\"transfers_ok\": %llu, \"transfers_failed\": %llu, \"bytes\": %llu, "
           "\"seconds\": %.6f, \"transfers_per_s\": %.3f, \"mb_per_s\": %.3f, "
           "\"latency_ms\": {\"p50\": %.3f, \"p95\": %.3f, \"p99\": %.3f, \"max\": %.3f}, "
           "\"retransmits\": %llu, \"errors\": {",
           (unsigned long long)n_ok, (unsigned long long)n_fail, (unsigned long long)bytes_ok,
           secs, n_ok / secs, bytes_ok / 1e6 / secs,
           pct(0.50), pct(0.95), pct(0.99), n_ok ? lat[n_ok - 1] * 1000.0 : 0.0,
           (unsigned long long)n_retx);
    int first = 1;
    for (int k = 0; k < E_KINDS; k++) {
        if (!errs[k]) continue;
        printf("%s\"%s\": %llu", first ? "" : ", ", e_names[k], (unsigned long long)errs[k]);
        first = 0;
    }
    for (int k = 0; k < 9; k++) {
        if (!server_err_code[k]) continue;
        printf("%s\"server_error_%d\": %llu", first ? "" : ", ", k,
               (unsigned long long)server_err_code[k]);
        first = 0;
    }
    printf("}, \"events\": {\"unknown_tid\": %llu, \"foreign_source\": %llu, "
           "\"duplicate_data\": %llu, \"out_of_order_data\": %llu, \"repeated_oack\": %llu, "
           "\"reacks\": %llu}, ",
           (unsigned long long)n_unknown_tid, (unsigned long long)n_foreign,
           (unsigned long long)n_dup_data, (unsigned long long)n_gap,
           (unsigned long long)n_oack_repeat, (unsigned long long)n_dup_acks);
    /* last server error message, JSON-escaped conservatively */
    printf("\"last_server_error\": \"");
    for (const char *c = last_server_msg; *c; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20 || ch > 0x7e) printf("?");
        else putchar(ch);
    }
    if (!n_ok) neg_bs_min = neg_ws_min = 0;
    printf("\", \"negotiated\": {\"blksize_min\": %d, \"blksize_max\": %d, "
           "\"windowsize_min\": %d, \"windowsize_max\": %d}",
           neg_bs_min, neg_bs_max, neg_ws_min, neg_ws_max);
    printf(", \"client_cpu_s\": %.6f, \"concurrency\": %d, \"transfers\": %llu}\n",
           cpu, conc, (unsigned long long)ntransfers);
    return n_fail ? 1 : 0;
}
