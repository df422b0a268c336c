#define _GNU_SOURCE
#include "udpio.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <netinet/udp.h>
#include <linux/errqueue.h>
#include <stdlib.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#define UDPIO_MAX_BATCH 64 /* the kernel's UDP_MAX_SEGMENTS */

int udpio_probe_gso(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int seg = 1400, ok;
    if (fd < 0)
        return 0;
    ok = setsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof seg) == 0;
    close(fd);
    return ok;
}

/* One datagram of len bytes at base, from or to *addr (NULL: the connected peer). */
static void set_msg(struct mmsghdr *m, struct iovec *iov, void *base, size_t len,
                    const struct sockaddr_in *addr)
{
    iov->iov_base = base;
    iov->iov_len = len;
    memset(&m->msg_hdr, 0, sizeof m->msg_hdr);
    m->msg_hdr.msg_iov = iov;
    m->msg_hdr.msg_iovlen = 1;
    m->msg_hdr.msg_name = (void *)addr;
    m->msg_hdr.msg_namelen = addr ? sizeof *addr : 0;
}

/* Ancillary data of one send: UDP_SEGMENT when gso_size, and the source address when from
 * (IP_PKTINFO: a socket bound to the wildcard address answers from the one it was asked
 * on). control has room for SEND_CTL bytes. */
#define SEND_CTL (CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(sizeof(struct in_pktinfo)))
static void set_control(struct msghdr *msg, char *control, uint16_t gso_size,
                        const struct in_addr *from)
{
    struct cmsghdr *cm = (struct cmsghdr *)control;
    size_t len = (gso_size ? CMSG_SPACE(sizeof(uint16_t)) : 0)
                 + (from ? CMSG_SPACE(sizeof(struct in_pktinfo)) : 0);
    if (!len)
        return;
    memset(control, 0, len);
    msg->msg_control = control;
    msg->msg_controllen = len;
    if (gso_size) {
        cm->cmsg_level = SOL_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        memcpy(CMSG_DATA(cm), &gso_size, sizeof gso_size);
        cm = (struct cmsghdr *)(control + CMSG_SPACE(sizeof(uint16_t)));
    }
    if (from) {
        struct in_pktinfo pi;
        memset(&pi, 0, sizeof pi);
        pi.ipi_spec_dst = *from;
        cm->cmsg_level = IPPROTO_IP;
        cm->cmsg_type = IP_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof pi);
        memcpy(CMSG_DATA(cm), &pi, sizeof pi);
    }
}

/* sendmmsg on a socket whose errors may be about earlier datagrams: with IP_RECVERR an
 * unconnected socket reports an ICMP error (about any peer) once, to whichever call comes
 * next. A failed first datagram is therefore tried once more; if it fails again it is
 * its own fault and is skipped (lost, as on the wire) so the ones after it still go.
 * A full send buffer stops the call: the rest wait for their transfers' timers. Returns
 * the datagrams sent. */
static int sendmmsg_all(int fd, struct mmsghdr *msgs, int n, int *lost)
{
    int pos = 0, sent = 0, retried = 0, r;
    *lost = 0;
    while (pos < n) {
        r = sendmmsg(fd, msgs + pos, (unsigned)(n - pos), 0);
        if (r > 0) {
            pos += r;
            sent += r;
            retried = 0;
            continue;
        }
        if (errno == EAGAIN || errno == ENOBUFS)
            break;
        if (!retried) {
            retried = 1;
            continue;
        }
        pos++; /* this datagram itself cannot go */
        (*lost)++;
        retried = 0;
    }
    *lost += n - pos;
    return sent;
}

int udpio_send_segments(int fd, const struct sockaddr_in *to, const struct in_addr *from,
                        char *buf, size_t seg_len, int nseg, size_t last_len, int use_gso)
{
    struct mmsghdr msgs[UDPIO_MAX_BATCH];
    struct iovec iovs[UDPIO_MAX_BATCH];
    char control[SEND_CTL];
    struct msghdr shared;
    int i, n;
    if (nseg <= 0)
        return 0;
    if (nseg > UDPIO_MAX_BATCH)
        return -EINVAL;
    if (nseg == 1 || use_gso) { /* one sendmsg: GSO cuts it into nseg datagrams */
        set_msg(&msgs[0], &iovs[0], buf, seg_len * (size_t)(nseg - 1) + last_len, to);
        set_control(&msgs[0].msg_hdr, control, nseg > 1 ? (uint16_t)seg_len : 0, from);
        for (i = 0; i < 2; i++) {
            if (sendmsg(fd, &msgs[0].msg_hdr, 0) >= 0)
                return nseg;
            /* connected: the error is the peer's; unconnected (to given): it may be another
             * peer's, reported once (see sendmmsg_all), so once more */
            if (!to || errno == EAGAIN || errno == ENOBUFS)
                break;
        }
        return -errno;
    }
    memset(&shared, 0, sizeof shared);
    set_control(&shared, control, 0, from);
    for (i = 0; i < nseg; i++) {
        set_msg(&msgs[i], &iovs[i], buf + seg_len * (size_t)i, i == nseg - 1 ? last_len : seg_len, to);
        msgs[i].msg_hdr.msg_control = shared.msg_control;  /* read only: one for all */
        msgs[i].msg_hdr.msg_controllen = shared.msg_controllen;
    }
    if (to) {
        n = sendmmsg_all(fd, msgs, nseg, &i);
        return n ? n : -EAGAIN;
    }
    n = sendmmsg(fd, msgs, (unsigned)nseg, 0);
    return n < 0 ? -errno : n;
}

int udpio_recv(int fd, char *buf, size_t len, struct sockaddr_in *from)
{
    socklen_t alen = sizeof *from;
    /* MSG_TRUNC: the datagram's real length, so a cut one is seen as such */
    ssize_t r = recvfrom(fd, buf, len, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)from, &alen);
    if (r < 0)
        return -errno;
    if ((size_t)r > len || alen != sizeof *from) /* truncated, or not IPv4 */
        return -EMSGSIZE;
    return (int)r;
}

#define UDPIO_IN_MAX 64
#define UDPIO_IN_CTL CMSG_SPACE(sizeof(struct in_pktinfo))

struct udpio_batch {
    struct mmsghdr in[UDPIO_IN_MAX];
    struct iovec in_iov[UDPIO_IN_MAX];
    struct sockaddr_in in_from[UDPIO_IN_MAX];
    char in_buf[UDPIO_IN_MAX][UDPIO_IN_LEN];
    char in_ctl[UDPIO_IN_MAX][UDPIO_IN_CTL];
    int out_n;
    size_t out_used;
    struct mmsghdr out[UDPIO_OUT_MAX];
    struct iovec out_iov[UDPIO_OUT_MAX];
    struct sockaddr_in out_to[UDPIO_OUT_MAX];
    char out_ctl[UDPIO_OUT_MAX][SEND_CTL];
    char out_buf[UDPIO_OUT_BYTES];
};

udpio_batch *udpio_batch_new(void)
{
    return calloc(1, sizeof(udpio_batch));
}

int udpio_batch_recv(int fd, udpio_batch *b)
{
    int i, n;
    for (i = 0; i < UDPIO_IN_MAX; i++) {
        set_msg(&b->in[i], &b->in_iov[i], b->in_buf[i], UDPIO_IN_LEN, &b->in_from[i]);
        b->in[i].msg_hdr.msg_control = b->in_ctl[i];
        b->in[i].msg_hdr.msg_controllen = UDPIO_IN_CTL;
    }
    n = recvmmsg(fd, b->in, UDPIO_IN_MAX, MSG_DONTWAIT, NULL);
    return n < 0 ? -errno : n;
}

int udpio_batch_get(udpio_batch *b, int i, const char **data, const struct sockaddr_in **from)
{
    struct msghdr *h = &b->in[i].msg_hdr;
    *data = b->in_buf[i];
    *from = &b->in_from[i];
    if ((h->msg_flags & MSG_TRUNC) || h->msg_namelen != sizeof(struct sockaddr_in))
        return -EMSGSIZE;
    return (int)b->in[i].msg_len;
}

int udpio_batch_pktinfo(udpio_batch *b, int i, int *ifindex, struct in_addr *local)
{
    struct msghdr *h = &b->in[i].msg_hdr;
    struct cmsghdr *cm;
    for (cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm))
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
            const struct in_pktinfo *pi = (const void *)CMSG_DATA(cm);
            *ifindex = pi->ipi_ifindex;
            *local = pi->ipi_spec_dst;
            return 1;
        }
    *ifindex = 0;
    local->s_addr = 0;
    return 0;
}

char *udpio_batch_add(udpio_batch *b, const struct sockaddr_in *to, const struct in_addr *from,
                      size_t len)
{
    int i = b->out_n;
    char *p;
    if (i == UDPIO_OUT_MAX || b->out_used + len > UDPIO_OUT_BYTES)
        return NULL;
    p = b->out_buf + b->out_used;
    b->out_to[i] = *to;
    set_msg(&b->out[i], &b->out_iov[i], p, len, &b->out_to[i]);
    set_control(&b->out[i].msg_hdr, b->out_ctl[i], 0, from);
    b->out_n++;
    b->out_used += len;
    return p;
}

void udpio_batch_unadd(udpio_batch *b)
{
    if (b->out_n) {
        b->out_n--;
        b->out_used -= b->out_iov[b->out_n].iov_len;
    }
}

int udpio_batch_flush(int fd, udpio_batch *b, uint64_t *bytes, int *lost, unsigned char *went)
{
    int sent = 0, i, j;
    *bytes = 0;
    *lost = 0;
    /* sendmmsg_all skips failed datagrams: which ones went is read back from msg_len */
    for (i = 0; i < b->out_n; i++)
        b->out[i].msg_len = 0;
    sent = sendmmsg_all(fd, b->out, b->out_n, lost);
    for (j = 0; j < b->out_n; j++) {
        *bytes += b->out[j].msg_len;
        if (went)
            went[j] = b->out[j].msg_len > 0;
    }
    b->out_n = 0;
    b->out_used = 0;
    return sent;
}

int udpio_read_error(int fd, struct sockaddr_in *peer)
{
    char control[256], data[64];
    struct iovec iov = {data, sizeof data};
    struct msghdr msg;
    struct cmsghdr *cm;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = peer;
    msg.msg_namelen = sizeof *peer;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
        return -errno;
    for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        const struct sock_extended_err *ee = (const void *)CMSG_DATA(cm);
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_RECVERR
            && ee->ee_origin == SO_EE_ORIGIN_ICMP && ee->ee_type == 3 && ee->ee_code == 3
            && msg.msg_namelen == sizeof *peer)
            return 1;
    }
    return 0;
}
