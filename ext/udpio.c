#define _GNU_SOURCE
#include "udpio.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <netinet/udp.h>

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

static int send_gso(int fd, char *buf, size_t seg_len, int nseg, size_t last_len)
{
    char control[CMSG_SPACE(sizeof(uint16_t))];
    struct iovec iov = {buf, seg_len * (size_t)(nseg - 1) + last_len};
    struct msghdr msg;
    struct cmsghdr *cm;
    memset(&msg, 0, sizeof msg);
    memset(control, 0, sizeof control);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    *(uint16_t *)CMSG_DATA(cm) = (uint16_t)seg_len;
    if (sendmsg(fd, &msg, 0) < 0)
        return -errno;
    return nseg;
}

int udpio_send_segments(int fd, char *buf, size_t seg_len, int nseg, size_t last_len,
                        int use_gso)
{
    struct mmsghdr msgs[UDPIO_MAX_BATCH];
    struct iovec iovs[UDPIO_MAX_BATCH];
    int i, n;
    if (nseg <= 0)
        return 0;
    if (nseg > UDPIO_MAX_BATCH)
        return -EINVAL;
    if (nseg == 1) {
        if (send(fd, buf, last_len, 0) < 0)
            return -errno;
        return 1;
    }
    if (use_gso)
        return send_gso(fd, buf, seg_len, nseg, last_len);
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)nseg);
    for (i = 0; i < nseg; i++) {
        iovs[i].iov_base = buf + seg_len * (size_t)i;
        iovs[i].iov_len = i == nseg - 1 ? last_len : seg_len;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
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
