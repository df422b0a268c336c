/* UDP I/O for the TFTP data plane: plain C, no Python.h. */
#ifndef BOOTSTORM_UDPIO_H
#define BOOTSTORM_UDPIO_H
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

/* 1 if the kernel accepts UDP_SEGMENT (UDP GSO, Linux >= 4.18), else 0. */
int udpio_probe_gso(void);

/* Send nseg datagrams on the connected socket fd, laid out back to back in buf: each
 * seg_len bytes except the last, which is last_len bytes. One sendmsg with UDP_SEGMENT when
 * use_gso and nseg > 1, else one sendmmsg (or send for one). Returns datagrams handed to
 * the kernel, or -errno. */
int udpio_send_segments(int fd, char *buf, size_t seg_len, int nseg, size_t last_len,
                        int use_gso);

/* One datagram of at most len bytes, without blocking: its length, -EAGAIN when none
 * waits, -EMSGSIZE when it was truncated or not IPv4, or another -errno. One per
 * wake-up is enough: a transfer has one ACK in flight, and a socket with more queued
 * stays ready for the next epoll round. */
int udpio_recv(int fd, char *buf, size_t len, struct sockaddr_in *from);

#endif
