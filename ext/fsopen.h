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

#endif
