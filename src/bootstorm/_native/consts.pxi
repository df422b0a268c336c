# TFTP constants, each with where it comes from.

cdef enum:
    # RFC 1350 section 5, RFC 2347 (OACK)
    OP_RRQ = 1
    OP_WRQ = 2
    OP_DATA = 3
    OP_ACK = 4
    OP_ERROR = 5
    OP_OACK = 6

cdef enum:
    # RFC 1350 appendix, RFC 2347 (8)
    ERR_UNDEFINED = 0
    ERR_NOT_FOUND = 1
    ERR_ACCESS = 2
    ERR_DISK_FULL = 3
    ERR_ILLEGAL_OP = 4
    ERR_UNKNOWN_TID = 5
    ERR_EXISTS = 6
    ERR_NO_USER = 7
    ERR_OPTION = 8

cdef enum:
    HEADER_LEN = 4           # opcode + block number (RFC 1350)
    DEFAULT_BLKSIZE = 512    # RFC 1350
    MIN_BLKSIZE = 8          # RFC 2348
    MAX_BLKSIZE = 65464      # RFC 2348: 65535 - 20 (IP) - 8 (UDP) - 4 (TFTP) - 39 margin
    MIN_TIMEOUT = 1          # RFC 2349, seconds
    MAX_TIMEOUT = 255
    MIN_WINDOWSIZE = 1       # RFC 7440
    MAX_WINDOWSIZE = 65535
    MAX_REQUEST_LEN = 1024   # a request beyond this is refused; RFC 2347 advises <= 512
    GSO_MAX_SEGMENTS = 64    # the kernel's UDP_MAX_SEGMENTS
    GSO_MAX_BYTES = 65000    # below the 65507-byte UDP payload limit of IPv4
