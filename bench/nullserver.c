/*
 * nullserver.c - a minimal TFTP read server used only to measure loadgen's own ceiling.
 *
 *     cc -O2 -o bench/build/nullserver bench/nullserver.c
 *     nullserver --port PORT --root DIR [--max-seconds 120]
 *
 * Serves plain file names (no '/') from DIR, each mmap'd once and kept (at most 16
 * files), on 127.0.0.1 only, with
 * blksize/windowsize/tsize, one socket per transfer, a window sent by one sendmmsg with
 * header+payload iovecs pointing into the mapping.  No retransmission timer (loopback;
 * a duplicate ACK resends the window after it), no access checks: never expose it.
 * It exits after --max-seconds.  If loadgen against this reaches far higher rates than
 * against the real servers, loadgen is not what limits the measurement.
 *
 * With --shared, every lock-step transfer (windowsize 1) shares one unconnected socket
 * instead: the ACKs of a wake-up are read by one recvmmsg and the DATA they release leave
 * in one sendmmsg, the fewest system calls per block a UDP server can make (bootstorm's
 * shared port does the same): the floor of server CPU per GB for a lock-step storm.
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
#include <strings.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAXT 8192
#define MAXW 64

struct xfer {
    int fd;
    const unsigned char *map;
    uint64_t fsize;
    struct sockaddr_in peer;
    uint32_t bs, ws;
    uint64_t acked;   /* blocks acknowledged */
    uint64_t nblocks; /* size/bs + 1 */
};

static struct { char name[256]; const unsigned char *map; uint64_t size; } files[16];
static int nfiles;
static const char *root;

static int get_file(const char *name, const unsigned char **map, uint64_t *size)
{
    if (!*name || strchr(name, '/') || strlen(name) > 255) return -1;
    for (int i = 0; i < nfiles; i++)
        if (!strcmp(files[i].name, name)) { *map = files[i].map; *size = files[i].size; return 0; }
    if (nfiles == 16) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, name);
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0) return -1;
    if (fstat(fd, &st) < 0) { close(fd); return -1; }
    const unsigned char *m = st.st_size ? mmap(NULL, st.st_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0)
                                        : (const unsigned char *)"";
    close(fd);
    if (m == MAP_FAILED) return -1;
    strcpy(files[nfiles].name, name);
    files[nfiles].map = m; files[nfiles].size = st.st_size;
    *map = m; *size = st.st_size;
    nfiles++;
    return 0;
}
static struct xfer xs[MAXT];
#define SHARED (-2)           /* xfer.fd of a transfer on the shared socket */
static int sfd = -1;          /* --shared: the socket lock-step transfers share */
static int16_t byport[65536]; /* --shared: client port -> slot + 1 (clients are on loopback) */
#define BATCH 64
static unsigned char hdr[MAXT][MAXW][4];

/* DATA block b of x as two iovecs: its header, written into h, and its bytes in the mapping;
 * msg (zeroed) points at them, and at to unless NULL (a connected socket). */
static void data_msg(const struct xfer *x, uint64_t b, unsigned char *h, struct iovec *iov,
                     struct msghdr *msg, struct sockaddr_in *to)
{
    uint64_t off = (b - 1) * x->bs;
    uint64_t len = off >= x->fsize ? 0 : (x->fsize - off < x->bs ? x->fsize - off : x->bs);
    h[0] = 0; h[1] = 3; h[2] = (b >> 8) & 0xff; h[3] = b & 0xff;
    iov[0].iov_base = h; iov[0].iov_len = 4;
    iov[1].iov_base = (void *)(x->map + (off < x->fsize ? off : 0)); iov[1].iov_len = len;
    memset(msg, 0, sizeof *msg);
    msg->msg_iov = iov;
    msg->msg_iovlen = 2;
    if (to) { msg->msg_name = to; msg->msg_namelen = sizeof *to; }
}

static void send_window(struct xfer *x, int slot)
{
    struct mmsghdr mm[MAXW];
    struct iovec iov[MAXW][2];
    unsigned n = 0;
    for (uint64_t b = x->acked + 1; b <= x->nblocks && n < x->ws; b++, n++)
        data_msg(x, b, hdr[slot][n], iov[n], &mm[n].msg_hdr, NULL);
    if (n) sendmmsg(x->fd, mm, n, 0);
}

static void close_x(int epfd, int i)
{
    if (xs[i].fd == SHARED) {
        byport[ntohs(xs[i].peer.sin_port)] = 0;
    } else {
        epoll_ctl(epfd, EPOLL_CTL_DEL, xs[i].fd, NULL);
        close(xs[i].fd);
    }
    xs[i].fd = -1;
}

/* --shared: read the shared socket's ACKs a batch at a time; the DATA they release leave
 * in one sendmmsg per batch, each to its own peer. */
static void drain_shared(int epfd)
{
    static struct mmsghdr in[BATCH], out[BATCH];
    static struct sockaddr_in from[BATCH];
    static struct iovec iniov[BATCH], outiov[BATCH][2];
    static unsigned char inbuf[BATCH][16], outhdr[BATCH][4];
    for (int round = 0; round < 16; round++) {
        for (int k = 0; k < BATCH; k++) {
            iniov[k].iov_base = inbuf[k]; iniov[k].iov_len = sizeof inbuf[k];
            memset(&in[k].msg_hdr, 0, sizeof in[k].msg_hdr);
            in[k].msg_hdr.msg_name = &from[k]; in[k].msg_hdr.msg_namelen = sizeof from[k];
            in[k].msg_hdr.msg_iov = &iniov[k]; in[k].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(sfd, in, BATCH, MSG_DONTWAIT, NULL), m = 0;
        if (n <= 0) return;
        for (int k = 0; k < n; k++) {
            const unsigned char *b = inbuf[k];
            int i = byport[ntohs(from[k].sin_port)] - 1;
            if (i < 0 || in[k].msg_len < 4 || from[k].sin_addr.s_addr != xs[i].peer.sin_addr.s_addr) continue;
            struct xfer *x = &xs[i];
            if (b[1] == 5) { close_x(epfd, i); continue; }
            if (b[1] != 4) continue;
            uint16_t d = (uint16_t)(((b[2] << 8) | b[3]) - (uint16_t)x->acked);
            if (d > 1) continue;
            x->acked += d;
            if (x->acked >= x->nblocks) { close_x(epfd, i); continue; }
            data_msg(x, x->acked + 1, outhdr[m], outiov[m], &out[m].msg_hdr, &x->peer);
            m++;
        }
        if (m) sendmmsg(sfd, out, m, 0);
        if (n < BATCH) return;
    }
}

int main(int argc, char **argv)
{
    int port = 0;

    double max_s = 120;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--root")) root = argv[i + 1];
        else if (!strcmp(argv[i], "--max-seconds")) max_s = atof(argv[i + 1]);
    }
    int shared = argc > 1 && !strcmp(argv[argc - 1], "--shared");
    if (!port || !root) { fprintf(stderr, "usage: nullserver --port P --root DIR\n"); return 2; }

    int epfd = epoll_create1(0);
    int lfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rb = 4 << 20;
    setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 2; }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = MAXT};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    for (int i = 0; i < MAXT; i++) xs[i].fd = -1;
    if (shared) {
        sfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in me = a; me.sin_port = 0;
        setsockopt(sfd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
        if (bind(sfd, (struct sockaddr *)&me, sizeof me) < 0) { perror("bind"); return 2; }
        struct epoll_event sev = {.events = EPOLLIN, .data.u32 = MAXT + 1};
        epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &sev);
    }
    fprintf(stderr, "nullserver listening on 127.0.0.1:%d\n", port);

    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned char buf[2048];
    struct epoll_event evs[256];
    int freehint = 0;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) * 1e-9 > max_s) break;
        int ne = epoll_wait(epfd, evs, 256, 500);
        for (int e = 0; e < ne; e++) {
            uint32_t id = evs[e].data.u32;
            if (id == MAXT + 1) { drain_shared(epfd); continue; }
            if (id == MAXT) { /* RRQs */
                for (int k = 0; k < 256; k++) {
                    struct sockaddr_in from; socklen_t fl = sizeof from;
                    ssize_t r = recvfrom(lfd, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
                    if (r < 0) break;
                    if (r < 4 || buf[1] != 1) continue;
                    buf[r] = 0;
                    int i = -1;
                    for (int j = 0; j < MAXT; j++) {
                        int c = (freehint + j) % MAXT;
                        if (xs[c].fd == -1) { i = c; break; }
                    }
                    if (i < 0) continue;
                    freehint = i + 1;
                    struct xfer *x = &xs[i];
                    memset(x, 0, sizeof *x);
                    x->peer = from; x->bs = 512; x->ws = 1;
                    if (get_file((const char *)buf + 2, &x->map, &x->fsize) < 0) {
                        static const unsigned char nf[] = "\0\5\0\1File not found";
                        sendto(lfd, nf, sizeof nf, 0, (struct sockaddr *)&from, sizeof from);
                        continue;
                    }
                    unsigned char oack[256]; size_t ol = 2; oack[0] = 0; oack[1] = 6;
                    /* skip filename and mode, then options */
                    size_t p = 2; int field = 0; const char *name = NULL;
                    while (p < (size_t)r) {
                        const char *s = (const char *)buf + p;
                        size_t l = strnlen(s, r - p);
                        if (field >= 2) {
                            if (field % 2 == 0) name = s;
                            else {
                                unsigned long v = strtoul(s, NULL, 10);
                                if (!strcasecmp(name, "blksize")) { x->bs = v > 65464 ? 65464 : (v < 8 ? 8 : v); ol += sprintf((char *)oack + ol, "blksize%c%u", 0, x->bs) + 1; }
                                else if (!strcasecmp(name, "windowsize")) { x->ws = v > MAXW ? MAXW : (v < 1 ? 1 : v); ol += sprintf((char *)oack + ol, "windowsize%c%u", 0, x->ws) + 1; }
                                else if (!strcasecmp(name, "tsize")) { ol += sprintf((char *)oack + ol, "tsize%c%llu", 0, (unsigned long long)x->fsize) + 1; }
                            }
                        }
                        field++; p += l + 1;
                    }
                    x->nblocks = x->fsize / x->bs + 1;
                    if (shared && x->ws == 1 && !byport[ntohs(from.sin_port)]) {
                        x->fd = SHARED;
                        byport[ntohs(from.sin_port)] = (int16_t)(i + 1);
                        if (ol > 2) {
                            sendto(sfd, oack, ol, 0, (struct sockaddr *)&from, sizeof from);
                        } else {  /* DATA 1 */
                            unsigned char h[4];
                            struct iovec iov[2];
                            struct msghdr msg;
                            data_msg(x, 1, h, iov, &msg, &x->peer);
                            sendmsg(sfd, &msg, 0);
                        }
                        continue;
                    }
                    x->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
                    struct sockaddr_in me = a; me.sin_port = 0;
                    bind(x->fd, (struct sockaddr *)&me, sizeof me);
                    connect(x->fd, (struct sockaddr *)&from, sizeof from);
                    struct epoll_event ev2 = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, x->fd, &ev2);
                    if (ol > 2) send(x->fd, oack, ol, 0);
                    else send_window(x, i);
                }
                continue;
            }
            struct xfer *x = &xs[id];
            for (int k = 0; k < 64 && x->fd >= 0; k++) {
                ssize_t r = recv(x->fd, buf, sizeof buf, 0);
                if (r < 0) break;
                if (r < 4) continue;
                if (buf[1] == 5) { close_x(epfd, id); break; }
                if (buf[1] != 4) continue;
                uint16_t n = (buf[2] << 8) | buf[3];
                uint16_t d = (uint16_t)(n - (uint16_t)x->acked);
                if (d > x->ws) continue;  /* stale ACK */
                x->acked += d;            /* d == 0: duplicate ACK -> resend the window */
                if (x->acked >= x->nblocks) { close_x(epfd, id); break; }
                send_window(x, id);
            }
        }
    }
    return 0;
}
