/* Opening files strictly beneath a root directory: plain C, no Python.h. */
#ifndef BOOTSTORM_FSOPEN_H
#define BOOTSTORM_FSOPEN_H

/* 1 if openat2(2) with RESOLVE_BENEATH is available (Linux >= 5.6), else 0. */
int fs_have_openat2(void);

/* Open path (relative, '/'-separated) read-only beneath rootfd. The kernel refuses any
 * resolution that leaves the root ('..' above it, absolute or escaping symlinks) with
 * -EXDEV. Without openat2 the path is walked one component at a time and every symlink
 * and '..' is refused (-EXDEV). Returns an fd or -errno. */
int fs_open_beneath(int rootfd, const char *path);


/* Size and modification time (ns) of an open file, by the statx system call: no libc symbol newer
 * than glibc 2.17 and no dependence on the libc's struct layout (musl and glibc alike).
 * Returns 0 or -errno. */
#include <stdint.h>
int fs_identity(int fd, uint64_t *size, int64_t *mtime_ns);

#endif
