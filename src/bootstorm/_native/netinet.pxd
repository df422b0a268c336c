# IPv4 socket addresses (<netinet/in.h>), declared once for the TFTP and DHCP modules.
from libc.stdint cimport uint16_t, uint32_t

cdef extern from "netinet/in.h" nogil:
    struct in_addr:
        uint32_t s_addr
    struct sockaddr_in:
        uint16_t sin_family
        uint16_t sin_port
        in_addr sin_addr
