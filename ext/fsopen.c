#define _GNU_SOURCE
#include "fsopen.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#define FS_RESOLVE_NO_MAGICLINKS 0x02
#define FS_RESOLVE_BENEATH 0x08

struct fs_open_how {
    uint64_t flags, mode, resolve;
};

/* O_NONBLOCK: a FIFO under the root must not hang the server; regular files ignore it. */
#define FS_FLAGS (O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)

static int openat2_beneath(int rootfd, const char *path)
{
    struct fs_open_how how = {FS_FLAGS, 0, FS_RESOLVE_BENEATH | FS_RESOLVE_NO_MAGICLINKS};
    long fd = syscall(SYS_openat2, rootfd, path, &how, sizeof how);
    return fd < 0 ? -errno : (int)fd;
}

int fs_have_openat2(void)
{
    int fd = openat2_beneath(AT_FDCWD, ".");
    if (fd >= 0)
        close(fd);
    return fd != -ENOSYS;
}

static int walk_beneath(int rootfd, const char *path)
{
    char part[NAME_MAX + 1];
    int dir = rootfd, fd = -ENOENT;
    const char *p = path;
    while (*p) {
        const char *end = strchrnul(p, '/');
        size_t len = (size_t)(end - p);
        int last = *end == '\0' || end[strspn(end, "/")] == '\0';
        if (len >= sizeof part) {
            fd = -ENAMETOOLONG;
            break;
        }
        memcpy(part, p, len);
        part[len] = '\0';
        p = *end ? end + 1 : end;
        if (len == 0 || strcmp(part, ".") == 0) {
            if (last) { fd = openat(dir, ".", FS_FLAGS); fd = fd < 0 ? -errno : fd; break; }
            continue;
        }
        if (strcmp(part, "..") == 0) {
            fd = -EXDEV;
            break;
        }
        fd = openat(dir, part, last ? FS_FLAGS | O_NOFOLLOW : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            fd = errno == ELOOP ? -EXDEV : -errno;
        if (dir != rootfd)
            close(dir);
        dir = rootfd;
        if (fd < 0 || last)
            break;
        dir = fd;
        fd = -ENOENT;
    }
    if (dir != rootfd)
        close(dir);
    return fd;
}

int fs_open_beneath(int rootfd, const char *path)
{
    int fd = openat2_beneath(rootfd, path);
    if (fd == -ENOSYS)
        return walk_beneath(rootfd, path);
    return fd;
}

#ifndef SYS_statx
#if defined(__x86_64__)
#define SYS_statx 332
#elif defined(__aarch64__)
#define SYS_statx 291
#endif
#endif
#define FS_AT_EMPTY_PATH 0x1000
#define FS_STATX_MTIME 0x40U
#define FS_STATX_SIZE 0x200U

/* The kernel's struct statx (include/uapi/linux/stat.h), a stable ABI of 256 bytes. */
struct fs_statx_time {
    int64_t tv_sec;
    uint32_t tv_nsec;
    int32_t reserved;
};
struct fs_statx {
    uint32_t mask, blksize;
    uint64_t attributes;
    uint32_t nlink, uid, gid;
    uint16_t mode, spare0;
    uint64_t ino, size, blocks, attributes_mask;
    struct fs_statx_time atime, btime, ctime, mtime;
    uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
    uint64_t spare[14];
};

int fs_identity(int fd, uint64_t *size, int64_t *mtime_ns)
{
    struct fs_statx st;
    if (syscall(SYS_statx, fd, "", FS_AT_EMPTY_PATH, FS_STATX_SIZE | FS_STATX_MTIME, &st) < 0)
        return -errno;
    *size = st.size;
    *mtime_ns = st.mtime.tv_sec * 1000000000LL + st.mtime.tv_nsec;
    return 0;
}
