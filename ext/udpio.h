/* Batched UDP I/O for the TFTP data plane: plain C, no Python.h. */
#ifndef BOOTSTORM_UDPIO_H
#define BOOTSTORM_UDPIO_H
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

/* 1 if the kernel accepts UDP_SEGMENT (UDP GSO, Linux >= 4.18), else 0. */
int udpio_probe_gso(void);

/* Send nseg datagrams laid out back to back in buf: each seg_len bytes except the
 * last, which is last_len bytes. One sendmsg with UDP_SEGMENT when use_gso and
 * nseg > 1, else one sendmmsg (or sendto for one). Returns datagrams handed to the
 * kernel, or -errno. */
int udpio_send_segments(int fd, const struct sockaddr_in *peer, char *buf,
                        size_t seg_len, int nseg, size_t last_len, int use_gso);

/* recvmmsg up to n datagrams of at most slot_len bytes into bufs (n slots back to
 * back). lens[i] gets each length, or -1 when the datagram was truncated.
 * Returns the count, 0 when nothing is pending, or -errno. */
int udpio_recv_batch(int fd, char *bufs, size_t slot_len, int n,
                     struct sockaddr_in *addrs, int *lens);

#endif
