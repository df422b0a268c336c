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
