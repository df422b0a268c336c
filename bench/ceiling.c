/*
 * ceiling.c - loopback limits measured in the same run as the servers.
 *
 *     cc -O2 -o bench/build/ceiling bench/ceiling.c
 *     ceiling blast    --size BYTES [--count N] [--max-seconds S]
 *     ceiling blast-gso --size BYTES [--count N] [--max-seconds S]
 *     ceiling pingpong --size BYTES [--count N] [--max-seconds S]
 *     ceiling pingpong-spin --size BYTES [--spin-us 50] [--count N] [--max-seconds S]
 *     [--pin SENDER_CPU,RECEIVER_CPU]   (each end on its own CPU, as bench/pin.py places
 *                                        servers and load generators)
 *
 * blast:    a sender process pushes N datagrams of SIZE bytes with sendmmsg (batches of 64)
 *           to a receiver process that drains them with recvmmsg; no protocol, no file,
 *           no acknowledgement.  Reports what the receiver got: the most a TFTP server
 *           could ever deliver on this loopback with that datagram size.
 * blast-gso: the same, but the sender hands the kernel up to 64 datagrams (64 KiB) per send as one UDP
 *           GSO buffer (UDP_SEGMENT = SIZE), as a server sending a whole window at once can.
 * pingpong: lock-step: one side sends SIZE bytes, the other answers with 4 bytes (an ACK),
 *           N times, blocking recv/send, nothing else: the most a lock-step (windowsize 1)
 *           transfer could reach - a latency bound, not a bandwidth bound.
 * pingpong-spin: the same, but the sending side (the server's) looks for the ACK with
 *           non-blocking recv for up to --spin-us before it sleeps in poll, as bootstorm's
 *           busy-polling does: the bound for a server that spins and a client that does not.
 *
 * 127.0.0.1 only; both loops are bounded by --count and --max-seconds.  Prints one JSON
 * object: datagrams, bytes, seconds, pps, mb_per_s (10^6 bytes), cpu_s (both processes).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#define MAXSIZE 65507

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_children_and_self(void)
{
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    getrusage(RUSAGE_CHILDREN, &b);
    return a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec + b.ru_stime.tv_sec +
           (a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec + b.ru_stime.tv_usec) / 1e6;
}

static int udp_bound(struct sockaddr_in *sa, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); exit(1); }
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)sa, sizeof *sa) < 0) { perror("bind"); exit(1); }
    socklen_t l = sizeof *sa;
    getsockname(fd, (struct sockaddr *)sa, &l);
    if (rcvbuf) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    int sb = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sb, sizeof sb);
    return fd;
}

static void pin(int cpu)
{
    cpu_set_t set;
    if (cpu < 0)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0)
        perror("sched_setaffinity");
}

static void usage(void)
{
    fprintf(stderr, "usage: ceiling {blast|blast-gso|pingpong|pingpong-spin} --size BYTES [--spin-us US] [--count N] [--max-seconds S]"
                    " [--pin SENDER_CPU,RECEIVER_CPU]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2) usage();
    const char *mode = argv[1];
    long size = 1468, count = 200000;
    double maxs = 10, spin_us = 50;
    int pin_sender = -1, pin_receiver = -1;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--size")) size = atol(argv[++i]);
        else if (!strcmp(argv[i], "--count")) count = atol(argv[++i]);
        else if (!strcmp(argv[i], "--max-seconds")) maxs = atof(argv[++i]);
        else if (!strcmp(argv[i], "--spin-us")) spin_us = atof(argv[++i]);
        else if (!strcmp(argv[i], "--pin")) {
            if (sscanf(argv[++i], "%d,%d", &pin_sender, &pin_receiver) != 2) usage();
        }
        else usage();
    }
    if (size < 4 || size > MAXSIZE || count < 1 || count > 100000000 || maxs <= 0 || maxs > 600) usage();
    int gso = !strcmp(mode, "blast-gso");
    int blast = gso || !strcmp(mode, "blast");
    int spin = !strcmp(mode, "pingpong-spin");
    if (!blast && !spin && strcmp(mode, "pingpong")) usage();
    if (spin_us < 0 || spin_us > 1000) usage();
    if (gso && size > 32000) usage(); /* one GSO buffer (at most 64 KiB) holds >= 2 segments */

    struct sockaddr_in ra, sa;
    int rfd = udp_bound(&ra, 32 << 20); /* receiver (the "client") */
    int sfd = udp_bound(&sa, 4 << 20);  /* sender (the "server") */
    if (connect(sfd, (struct sockaddr *)&ra, sizeof ra) < 0 || connect(rfd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("connect");
        return 1;
    }
    static char buf[BATCH][MAXSIZE + 1];
    memset(buf, 0xA5, sizeof buf);
    double cpu0 = cpu_children_and_self();

    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) { /* the sender */
        pin(pin_sender);
        close(rfd);
        alarm((unsigned)maxs + 5); /* bounded even if the parent dies */
        double end = now() + maxs;
        if (blast) {
            struct mmsghdr m[BATCH];
            struct iovec iov[BATCH];
            for (int k = 0; k < BATCH; k++) {
                iov[k].iov_base = buf[k];
                iov[k].iov_len = size;
                memset(&m[k], 0, sizeof m[k]);
                m[k].msg_hdr.msg_iov = &iov[k];
                m[k].msg_hdr.msg_iovlen = 1;
            }
            long sent = 0;
            if (gso) {
                static char big[65536];
                memset(big, 0xA5, sizeof big);
                int seg = (int)size;
                if (setsockopt(sfd, SOL_UDP, UDP_SEGMENT, &seg, sizeof seg) < 0) { perror("UDP_SEGMENT"); _exit(1); }
                long per = 65000 / size < BATCH ? 65000 / size : BATCH; /* segments per send */
                while (sent < count && now() < end) {
                    long n = count - sent < per ? count - sent : per;
                    if (send(sfd, big, n * size, 0) < 0) {
                        if (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED) { usleep(50); continue; }
                        perror("send gso");
                        _exit(1);
                    }
                    sent += n;
                }
                seg = 0;
                setsockopt(sfd, SOL_UDP, UDP_SEGMENT, &seg, sizeof seg);
            }
            while (sent < count && now() < end) {
                int n = count - sent < BATCH ? (int)(count - sent) : BATCH;
                int r = sendmmsg(sfd, m, n, 0);
                if (r < 0) {
                    if (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED) { usleep(50); continue; }
                    perror("sendmmsg");
                    _exit(1);
                }
                sent += r;
            }
            /* a few empty datagrams tell the receiver we are done (it also stops on idle) */
            for (int k = 0; k < 8; k++) send(sfd, buf[0], 0, 0);
        } else {
            char ack[8];
            for (long i = 0; i < count && now() < end; i++) {
                if (send(sfd, buf[0], size, 0) < 0) { perror("send"); _exit(1); }
                if (spin) { /* bounded: spin_us at most, then sleep as below */
                    double until = now() + spin_us * 1e-6;
                    int got_ack = 0;
                    do {
                        if (recv(sfd, ack, sizeof ack, MSG_DONTWAIT) >= 0) { got_ack = 1; break; }
                    } while (now() < until);
                    if (got_ack) continue;
                }
                struct pollfd p = {sfd, POLLIN, 0};
                if (poll(&p, 1, 1000) <= 0) break; /* bounded: a lost ACK ends the run */
                if (recv(sfd, ack, sizeof ack, 0) < 0) break;
            }
            send(sfd, buf[0], 0, 0);
        }
        _exit(0);
    }
    close(sfd);
    pin(pin_receiver);
    /* the receiver */
    long got = 0;
    uint64_t bytes = 0;
    double t0 = 0, t1 = 0, end = now() + maxs + 2;
    if (blast) {
        struct mmsghdr m[BATCH];
        struct iovec iov[BATCH];
        for (int k = 0; k < BATCH; k++) {
            iov[k].iov_base = buf[k];
            iov[k].iov_len = MAXSIZE + 1;
            memset(&m[k], 0, sizeof m[k]);
            m[k].msg_hdr.msg_iov = &iov[k];
            m[k].msg_hdr.msg_iovlen = 1;
        }
        int done = 0;
        while (!done && now() < end) {
            struct pollfd p = {rfd, POLLIN, 0};
            if (poll(&p, 1, 500) <= 0) break; /* idle: the sender is done or dead */
            int r = recvmmsg(rfd, m, BATCH, MSG_DONTWAIT, NULL);
            if (r <= 0) continue;
            for (int k = 0; k < r; k++) {
                if (m[k].msg_len == 0) { done = 1; break; }
                if (!got) t0 = now();
                got++;
                bytes += m[k].msg_len;
                t1 = now();
            }
        }
    } else {
        static char in[MAXSIZE + 1];
        uint32_t ack = htonl(0x00040000);
        t0 = now();
        while (now() < end) {
            struct pollfd p = {rfd, POLLIN, 0};
            if (poll(&p, 1, 1000) <= 0) break;
            ssize_t r = recv(rfd, in, sizeof in, 0);
            if (r <= 0) break;
            got++;
            bytes += r;
            send(rfd, &ack, 4, 0);
        }
        t1 = now();
    }
    int st;
    waitpid(pid, &st, 0);
    double cpu = cpu_children_and_self() - cpu0;
    double secs = t1 > t0 ? t1 - t0 : 1e-9;
    printf("{\"mode\": \"%s\", \"size\": %ld, \"count\": %ld, \"datagrams\": %ld, \"bytes\": %llu, "
           "\"seconds\": %.6f, \"pps\": %.1f, \"mb_per_s\": %.2f, \"cpu_s\": %.4f}\n",
           mode, size, count, got, (unsigned long long)bytes, secs, got / secs, bytes / 1e6 / secs, cpu);
    return 0;
}
