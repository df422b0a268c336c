/* UDP I/O for the TFTP data plane: plain C, no Python.h. */
#ifndef BOOTSTORM_UDPIO_H
#define BOOTSTORM_UDPIO_H
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

/* 1 if the kernel accepts UDP_SEGMENT (UDP GSO, Linux >= 4.18), else 0. */
int udpio_probe_gso(void);

/* Send nseg datagrams to *to (NULL: the connected socket's peer) from *from (NULL: the
 * address the kernel picks), laid out back to back in buf: each seg_len bytes except the
 * last, which is last_len bytes. One sendmsg (with UDP_SEGMENT when use_gso and nseg > 1),
 * else one sendmmsg. Returns datagrams handed to the kernel, or -errno. With `to` (an
 * unconnected socket, IP_RECVERR) an error may be about an earlier datagram to another
 * peer: a failed send is tried once more before it counts. */
int udpio_send_segments(int fd, const struct sockaddr_in *to, const struct in_addr *from,
                        char *buf, size_t seg_len, int nseg, size_t last_len, int use_gso);

/* One datagram of at most len bytes, without blocking: its length, -EAGAIN when none
 * waits, -EMSGSIZE when it was truncated or not IPv4, or another -errno. One per
 * wake-up is enough: a transfer has one ACK in flight, and a socket with more queued
 * stays ready for the next epoll round. */
int udpio_recv(int fd, char *buf, size_t len, struct sockaddr_in *from);

/* A socket shared by many lock-step transfers (unconnected, each datagram to its own
 * peer): what arrives is read by one recvmmsg, and the replies of one wake-up leave in one
 * sendmmsg. Both cut the system calls per transfer, and the socket itself is made once
 * instead of per transfer. Allocated with udpio_batch_new, released with free(). */
typedef struct udpio_batch udpio_batch;
#define UDPIO_IN_LEN 2048 /* bytes kept of each datagram received: ACKs are 4, requests small */
udpio_batch *udpio_batch_new(void);

/* Receive up to a batch of datagrams without blocking: their count, or -errno. */
int udpio_batch_recv(int fd, udpio_batch *b);
/* Datagram i of the last receive: its length, or -EMSGSIZE when it was truncated or not
 * IPv4; *data and *from point into the batch. */
int udpio_batch_get(udpio_batch *b, int i, const char **data, const struct sockaddr_in **from);
/* The interface and local address datagram i arrived on (IP_PKTINFO on the socket): 1, or
 * 0 with both zero when the socket does not report them. */
int udpio_batch_pktinfo(udpio_batch *b, int i, int *ifindex, struct in_addr *local);

/* Room for one outgoing datagram of len bytes to *to from *from (NULL: the kernel's
 * choice; both copied), or NULL when the batch is full: flush it and ask again. len is at
 * most UDPIO_OUT_BYTES. */
#define UDPIO_OUT_BYTES (256 * 1024)
#define UDPIO_OUT_MAX 64 /* datagrams one batch holds */
char *udpio_batch_add(udpio_batch *b, const struct sockaddr_in *to, const struct in_addr *from,
                      size_t len);
/* Take back the datagram added last (its content could not be read). */
void udpio_batch_unadd(udpio_batch *b);
/* Send what was added, in order; the batch is empty afterwards. Returns the datagrams the
 * kernel took, with their bytes in *bytes; *lost says how many it did not take (dropped,
 * as on a congested link: their transfers' timers resend them). A datagram that fails is
 * tried once more (the error may be another peer's), then skipped: the rest still go.
 * went[i], if went is not NULL, says whether the i-th datagram added went. */
int udpio_batch_flush(int fd, udpio_batch *b, uint64_t *bytes, int *lost, unsigned char *went);

/* One entry of the socket's error queue (IP_RECVERR): 1 when it is ICMP port
 * unreachable, with the peer that sent it in *peer; 0 for any other error; -EAGAIN when
 * the queue is empty. */
int udpio_read_error(int fd, struct sockaddr_in *peer);

#endif
