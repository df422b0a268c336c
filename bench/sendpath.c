/* Which way from the page cache to a UDP socket costs the server least CPU per datagram?
 *   pread:    pread into a reused buffer (one copy), then sendto
 *   sendfile: send the 4-byte header with MSG_MORE, then sendfile the payload (zero copy)
 *   gso:      preadv a whole window into a reused buffer, one sendmsg with UDP_SEGMENT
 * Each sends N datagrams of BLKSIZE bytes from a cached file to a loopback socket that
 * nobody reads (the kernel drops on a full buffer: only the sender's cost is measured).
 * Usage: sendpath FILE BLKSIZE N     prints CPU ns per datagram for each method. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

static double cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
}

int main(int argc, char **argv)
{
    if (argc != 4) { fprintf(stderr, "usage: sendpath FILE BLKSIZE N\n"); return 2; }
    int fd = open(argv[1], O_RDONLY);
    size_t blk = (size_t)atoi(argv[2]);
    long n = atol(argv[3]);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || (size_t)st.st_size < blk * 64) { perror("file"); return 1; }
    long blocks = st.st_size / (off_t)blk;
    int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bind(rx, (struct sockaddr *)&a, sizeof a);
    getsockname(rx, (struct sockaddr *)&a, &al);
    connect(tx, (struct sockaddr *)&a, sizeof a);
    char *buf = malloc(64 * (blk + 4));
    char hdr[4] = {0, 3, 0, 0};
    double t0 = cpu_ns();
    for (long i = 0; i < n; i++) {
        pread(fd, buf + 4, blk, (off_t)((i % blocks) * blk));
        memcpy(buf, hdr, 4);
        send(tx, buf, blk + 4, MSG_DONTWAIT);
    }
    double t1 = cpu_ns();
    for (long i = 0; i < n; i++) {
        off_t off = (off_t)((i % blocks) * blk);
        send(tx, hdr, 4, MSG_MORE | MSG_DONTWAIT);
        sendfile(tx, fd, &off, blk);
    }
    double t2 = cpu_ns();
    int seg = (int)(blk + 4), per = 65000 / seg;
    if (per > 64) per = 64;
    if (per < 1) per = 1;
    for (long i = 0; i < n; i += per) {
        struct iovec iov[64];
        for (int j = 0; j < per; j++) {
            memcpy(buf + j * seg, hdr, 4);
            iov[j].iov_base = buf + j * seg + 4;
            iov[j].iov_len = blk;
        }
        preadv(fd, iov, per, (off_t)(((i / per) % (blocks / per)) * per * blk));
        char ctl[CMSG_SPACE(sizeof(uint16_t))] = {0};
        struct iovec one = {buf, (size_t)seg * per};
        struct msghdr m = {.msg_iov = &one, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_UDP; cm->cmsg_type = UDP_SEGMENT; cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        *(uint16_t *)CMSG_DATA(cm) = (uint16_t)seg;
        sendmsg(tx, &m, MSG_DONTWAIT);
    }
    double t3 = cpu_ns();
    printf("{\"blksize\": %zu, \"datagrams\": %ld, \"ns_per_datagram\": {\"pread_send\": %.0f, \"sendfile_msg_more\": %.0f, \"preadv_gso_window\": %.0f}}\n",
           blk, n, (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n);
    return 0;
}
