from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t, uint64_t

from bootstorm._native.netinet cimport in_addr, sockaddr_in


cdef enum XferState:
    XFER_FREE = 0
    XFER_OACK_SENT = 1    # waiting for ACK 0 (RFC 2347)
    XFER_SENDING = 2      # DATA windows going out (RFC 1350, RFC 7440)


cdef extern from "udpio.h" nogil:
    ctypedef struct udpio_batch:
        pass
    enum: UDPIO_OUT_MAX


cdef struct Queued:         # a DATA in the batch being filled: whose, and which block
    int32_t slot
    uint32_t gen
    uint64_t block


cdef struct Xfer:
    int sock                # its UDP socket (the TID): its own, or a shared one
    uint8_t shared          # sock is shared with other lock-step transfers (Engine.share)
    int fd                  # file being served (shared; owned by the Python side)
    const char *content     # or its snapshot in memory (a bytes object in Engine.contents)
    uint32_t gen            # bumped when the slot is reused; stale epoll events are dropped
    uint8_t state
    uint16_t oack_len
    uint32_t blksize
    uint32_t window
    uint64_t size
    int64_t mtime_ns        # st_mtime at admission: any write or truncate changes it (a rename does not)
    uint64_t last_block     # absolute number of the final (short) block
    uint64_t acked          # highest block acknowledged in order
    uint64_t sent           # highest block sent
    uint64_t started_ms
    uint64_t progress_ms    # last time the client made progress
    uint64_t deadline_ms    # next retransmission
    uint32_t rto_ms         # current retransmission timeout (doubles per timeout)
    uint32_t rto_initial_ms
    uint32_t give_up_ms     # abandon after this long without progress
    uint32_t retransmits
    int32_t wheel_prev
    int32_t wheel_next
    int32_t wheel_slot
    sockaddr_in peer
    in_addr local           # answer from this address (a wildcard-bound shared socket), or 0
    char oack[160]


cdef class Engine:
    cdef Xfer *xfers
    cdef int32_t capacity
    cdef int32_t active_count
    cdef int32_t lockstep_count   # of them with windowsize 1: busy-polling is for these
    cdef int32_t free_head        # free slots chained through wheel_next
    cdef int epfd
    cdef int watch_epfd           # fds whose readiness ends a spin (watch()), or -1
    cdef bint gso
    cdef bint fake_clock
    cdef uint64_t now_ms
    cdef uint64_t wheel_ms        # start of the next wheel slot to expire
    cdef int32_t *wheel
    cdef char *scratch
    cdef char rbuf[600]           # one received datagram: ACKs are 4 bytes, ERRORs short
    cdef sockaddr_in raddr
    cdef void *events
    cdef int shared_fds[16]       # sockets shared by lock-step transfers, one per local address
    cdef int nshared
    cdef int32_t *by_peer         # shared transfers by client address: open addressing, -1 empty
    cdef uint32_t by_peer_mask
    cdef udpio_batch *batch       # a shared socket's datagrams in and replies out
    cdef int batch_fd             # the shared socket being drained: its sends are batched
    cdef Queued queued[UDPIO_OUT_MAX]  # the batch's DATA, in order, and which of them went
    cdef unsigned char went[UDPIO_OUT_MAX]
    cdef int nqueued
    cdef int request_fd           # the shared socket that also takes requests (single-port), or -1
    cdef list requests            # requests read from it, for take_requests()
    cdef int nrequests            # len(requests), kept in C
    cdef uint32_t hash_seed       # of the by_peer table
    cdef object on_done
    cdef list contents            # slot -> bytes snapshot being served, or None
    cdef bint in_wheel            # tick() is walking the wheel: on_done calls are deferred
    cdef list deferred            # (slot, outcome, ...) of transfers ended during the walk
    cdef int spin_misses          # busy-polls in a row that caught nothing
    cdef int spin_skip            # poll() calls left that do not spin (backing off)
    # counters
    cdef public uint64_t packets_in, packets_out, malformed, strangers
    cdef public uint64_t retransmits, bytes_out, send_errors, transfers_ok, transfers_failed
    cdef public uint64_t send_calls
    cdef public uint64_t spins, spin_hits, spin_yields  # busy-polling: see poll()

    cdef inline uint64_t clock(self) noexcept
    cdef inline uint64_t clock_us(self) noexcept
    cdef int poll_round(self) noexcept
    cdef void spin(self, int spin_us) noexcept
    cdef uint32_t peer_hash(self, const sockaddr_in *a) noexcept
    cdef int32_t peer_find(self, const sockaddr_in *a) noexcept
    cdef void peer_insert(self, int32_t slot) noexcept
    cdef void peer_remove(self, int32_t slot) noexcept
    cdef void drain_shared(self, int fd) noexcept
    cdef void flush_batch(self, int fd) noexcept
    cdef void take_request(self, int i, const char *data, int n, const sockaddr_in *src) noexcept
    cdef void read_errors(self, int fd) noexcept
    cdef int send_one(self, Xfer *x, char *pkt, size_t n) noexcept
    cdef int send_segments(self, int fd, const sockaddr_in *to, const in_addr *src,
                           char *buf, size_t seg, int nseg, size_t last, int gso) noexcept
    cdef void wheel_insert(self, int32_t slot) noexcept
    cdef void wheel_remove(self, int32_t slot) noexcept
    cdef bint file_unchanged(self, Xfer *x) noexcept
    cdef int send_window(self, int32_t slot) noexcept
    cdef int send_oack(self, int32_t slot) noexcept
    cdef void on_ack(self, int32_t slot, uint16_t block) noexcept
    cdef void on_timeout(self, int32_t slot) noexcept
    cdef void handle_datagram(self, int32_t slot, const char *pkt, int n, sockaddr_in *src) noexcept
    cdef void send_error_to(self, Xfer *x, sockaddr_in *dst, uint16_t code, const char *msg) noexcept
    cdef void finish(self, int32_t slot, int outcome, int code) noexcept
