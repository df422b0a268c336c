/*
 * dhcpgen.c - PXE ProxyDHCP load generator (DHCPDISCOVER to :67, DHCPREQUEST to :4011).
 *
 *     cc -O2 -o bench/build/dhcpgen bench/dhcpgen.c
 *     dhcpgen --iface eth0 --server 10.213.0.1 --mode discover|request4011
 *             --count N --macs M [--inflight K] [--arch A] [--ciaddr IP]
 *             [--timeout-ms 1000] [--max-seconds 60]
 *
 * Runs only inside a named network namespace bs-* (its /proc/self/ns/net must be one of
 * /run/netns/bs-*, as `ip netns exec` gives it; it refuses otherwise), from a UDP socket bound to
 * 0.0.0.0:68 on --iface (SO_BINDTODEVICE).  Closed loop: at most K requests outstanding;
 * request i comes from MAC 52:54:00:00:hi:lo with lo/hi = i % M, xid = base + i, and is
 * answered or counted lost after --timeout-ms (no retransmission: loss is what we measure).
 *
 * discover:    548-byte PXE DHCPDISCOVER (options 53, 57, 55, 97, 94, 93, 60 as EDK2 sends
 *              them), broadcast to 255.255.255.255:67; replies come back broadcast to :68.
 * request4011: DHCPREQUEST with ciaddr = --ciaddr, unicast to SERVER:4011 from port 68
 *              (as iPXE does); the ACK comes back to ciaddr:68.
 *
 * A reply counts when it is a BOOTREPLY whose xid and chaddr match an outstanding request.
 * Prints one JSON object: sent, replies, lost, late, duplicates, foreign, seconds,
 * replies_per_s, loss, latency_ms {p50, p95, p99, max}, msg_types, client_cpu_s.
 * Every loop is bounded by --count and --max-seconds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PKT 548
#define MAXN 10000000L

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: dhcpgen --iface IF --server IP --mode discover|request4011 --count N --macs M\n"
            "               [--inflight K] [--arch A] [--ciaddr IP] [--timeout-ms T] [--max-seconds S]\n");
    exit(2);
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}


int main(int argc, char **argv)
{
    const char *iface = NULL, *server = NULL, *mode = NULL, *ciaddr_s = "0.0.0.0";
    long count = 0, macs = 0, inflight = 64;
    int arch = 0, timeout_ms = 1000;
    double maxs = 60;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--iface")) iface = v;
        else if (!strcmp(a, "--server")) server = v;
        else if (!strcmp(a, "--mode")) mode = v;
        else if (!strcmp(a, "--count")) count = atol(v);
        else if (!strcmp(a, "--macs")) macs = atol(v);
        else if (!strcmp(a, "--inflight")) inflight = atol(v);
        else if (!strcmp(a, "--arch")) arch = atoi(v);
        else if (!strcmp(a, "--ciaddr")) ciaddr_s = v;
        else if (!strcmp(a, "--timeout-ms")) timeout_ms = atoi(v);
        else if (!strcmp(a, "--max-seconds")) maxs = atof(v);
        else usage();
    }
    if (!iface || !server || !mode || count < 1 || count > MAXN || macs < 1 || macs > 65536 ||
        inflight < 1 || inflight > 65536 || timeout_ms < 1 || timeout_ms > 60000 || maxs <= 0 || maxs > 3600 ||
        arch < 0 || arch > 65535)
        usage();
    int disc = !strcmp(mode, "discover");
    if (!disc && strcmp(mode, "request4011")) usage();

    /* safety: only inside a named namespace of the benchmark (ip netns add bs-...) */
    struct stat me;
    int inside = 0;
    if (stat("/proc/self/ns/net", &me)) { perror("dhcpgen: /proc/self/ns/net"); return 2; }
    DIR *d = opendir("/run/netns");
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[512];
        struct stat st;
        if (strncmp(e->d_name, "bs-", 3)) continue;
        snprintf(path, sizeof path, "/run/netns/%s", e->d_name);
        if (!stat(path, &st) && st.st_ino == me.st_ino && st.st_dev == me.st_dev) inside = 1;
    }
    if (d) closedir(d);
    if (!inside) {
        fprintf(stderr, "dhcpgen: refusing to run outside a bs-* network namespace (ip netns exec)\n");
        return 2;
    }
    struct in_addr srv, ci;
    if (!inet_aton(server, &srv) || !inet_aton(ciaddr_s, &ci)) usage();

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); return 1; }
    int one = 1, rb = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb);
    if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, iface, strlen(iface) + 1) < 0) { perror("SO_BINDTODEVICE"); return 1; }
    struct sockaddr_in me_a = {.sin_family = AF_INET, .sin_port = htons(68), .sin_addr.s_addr = INADDR_ANY};
    if (bind(fd, (struct sockaddr *)&me_a, sizeof me_a) < 0) { perror("bind :68"); return 1; }
    struct sockaddr_in to = {.sin_family = AF_INET};
    if (disc) {
        to.sin_port = htons(67);
        to.sin_addr.s_addr = INADDR_BROADCAST;
    } else {
        to.sin_port = htons(4011);
        to.sin_addr = srv;
    }

    /* the template */
    unsigned char tpl[PKT];
    memset(tpl, 0, sizeof tpl);
    tpl[0] = 1; tpl[1] = 1; tpl[2] = 6;
    tpl[8] = 0; tpl[9] = 4; /* secs 4 */
    if (!disc) memcpy(tpl + 12, &ci, 4);
    tpl[28] = 0x52; tpl[29] = 0x54; tpl[30] = 0x00; tpl[31] = 0x00;
    tpl[236] = 99; tpl[237] = 130; tpl[238] = 83; tpl[239] = 99;
    unsigned char *o = tpl + 240;
    *o++ = 53; *o++ = 1; *o++ = disc ? 1 : 3;
    *o++ = 57; *o++ = 2; *o++ = 0x05; *o++ = 0xC0; /* 1472 */
    static const unsigned char prl[] = {1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51,
                                        54, 58, 59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135};
    *o++ = 55; *o++ = sizeof prl; memcpy(o, prl, sizeof prl); o += sizeof prl;
    unsigned char *uuid = NULL;
    *o++ = 97; *o++ = 17; *o++ = 0; uuid = o; memset(o, 0x11, 16); o += 16;
    *o++ = 94; *o++ = 3; *o++ = 1; *o++ = 3; *o++ = 16;
    *o++ = 93; *o++ = 2; *o++ = arch >> 8; *o++ = arch & 255;
    char vc[64];
    int vl = snprintf(vc, sizeof vc, "PXEClient:Arch:%05d:UNDI:%s", arch, arch == 0 ? "002001" : "003000");
    *o++ = 60; *o++ = vl; memcpy(o, vc, vl); o += vl;
    *o++ = 255;

    double *sent_at = calloc(count, sizeof(double));
    unsigned char *state = calloc(count, 1); /* 0 unsent, 1 outstanding, 2 answered, 3 lost */
    double *lat = calloc(count, sizeof(double));
    if (!sent_at || !state || !lat) { perror("calloc"); return 1; }
    long head = 0; /* requests go out in index order and the timeout is constant: the oldest
                      possibly outstanding one is the first index >= head still in state 1 */
    uint32_t base = (uint32_t)(getpid() * 2654435761u) & 0x7f000000u;
    long next = 0, out = 0, replies = 0, lost = 0, late = 0, dups = 0, foreign = 0, nlat = 0, senderr = 0;
    long types[9] = {0};
    double tmo = timeout_ms / 1000.0, t0 = now(), end = t0 + maxs, last = t0;
    unsigned char pkt[PKT], in[2048];
    memcpy(pkt, tpl, PKT);

    while (now() < end) {
        /* send while the window has room */
        while (out < inflight && next < count) {
            long i = next++;
            uint32_t xid = htonl(base + (uint32_t)i);
            memcpy(pkt + 4, &xid, 4);
            long m = i % macs;
            pkt[32] = (m >> 8) & 255; pkt[33] = m & 255;
            pkt[(uuid - tpl) + 14] = (m >> 8) & 255;
            pkt[(uuid - tpl) + 15] = m & 255;
            if (sendto(fd, pkt, PKT, 0, (struct sockaddr *)&to, sizeof to) < 0) {
                if (errno == ENOBUFS || errno == EAGAIN) { next--; break; }
                senderr++;
                state[i] = 3;
                lost++;
                continue;
            }
            sent_at[i] = now();
            state[i] = 1;
            out++;
        }
        if (next >= count && out == 0) break;
        /* expire the oldest */
        double t = now();
        while (head < next) {
            if (state[head] != 1) { head++; continue; }
            if (t - sent_at[head] < tmo) break;
            state[head] = 3; lost++; out--;
            head++;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int wait_ms = 5;
        if (poll(&p, 1, wait_ms) <= 0) continue;
        for (int k = 0; k < 256; k++) { /* drain, bounded per wakeup */
            ssize_t r = recv(fd, in, sizeof in, MSG_DONTWAIT);
            if (r < 0) break;
            if (r < 240 || in[0] != 2) { foreign++; continue; }
            uint32_t x;
            memcpy(&x, in + 4, 4);
            x = ntohl(x) - base;
            if (x >= (uint32_t)count || state[x] == 0) { foreign++; continue; }
            long m = x % macs;
            if (in[28] != 0x52 || in[32] != ((m >> 8) & 255) || in[33] != (m & 255)) { foreign++; continue; }
            if (state[x] == 2) { dups++; continue; }
            if (state[x] == 3) { late++; continue; }
            double tt = now();
            state[x] = 2; out--; replies++;
            lat[nlat++] = (tt - sent_at[x]) * 1000.0;
            last = tt;
            /* message type */
            for (long q = 240; q + 2 < r && in[q] != 255;) {
                if (in[q] == 0) { q++; continue; }
                if (in[q] == 53 && in[q + 1] == 1) { int mt = in[q + 2]; if (mt > 0 && mt < 9) types[mt]++; break; }
                q += 2 + in[q + 1];
            }
        }
    }
    /* whatever is still outstanding at the deadline is lost */
    for (long i = 0; i < count; i++) if (state[i] == 1) { state[i] = 3; lost++; }
    if (getenv("DHCPGEN_DEBUG")) for (long i = 0, n = 0; i < count && n < 20; i++) if (state[i] == 3) { fprintf(stderr, "lost %ld\n", i); n++; }
    long unsent = count - next;
    double secs = (replies ? last : now()) - t0;
    if (secs <= 0) secs = 1e-9;
    qsort(lat, nlat, sizeof(double), cmpd);
#define PCT(q) (nlat ? lat[(long)((nlat - 1) * (q))] : 0.0)
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("{\"mode\": \"%s\", \"count\": %ld, \"macs\": %ld, \"inflight\": %ld, \"sent\": %ld, \"unsent\": %ld, "
           "\"replies\": %ld, \"lost\": %ld, \"late\": %ld, \"duplicates\": %ld, \"foreign\": %ld, \"send_errors\": %ld, "
           "\"seconds\": %.6f, \"replies_per_s\": %.1f, \"loss\": %.6f, "
           "\"latency_ms\": {\"p50\": %.3f, \"p95\": %.3f, \"p99\": %.3f, \"max\": %.3f}, "
           "\"msg_types\": {\"offer\": %ld, \"ack\": %ld, \"nak\": %ld, \"other\": %ld}, \"client_cpu_s\": %.4f}\n",
           mode, count, macs, inflight, next, unsent, replies, lost, late, dups, foreign, senderr,
           secs, replies / secs, (double)(count - replies) / count,
           PCT(0.5), PCT(0.95), PCT(0.99), nlat ? lat[nlat - 1] : 0.0,
           types[2], types[5], types[6], replies - types[2] - types[5] - types[6], cpu);
    return replies == count ? 0 : 1;
}
