/* LD_PRELOAD shim for the queue fault tests: make writes and syncs of chosen files fail with EIO.

   While the environment variable SV_EIO is set and non-empty, write, pwrite, pwrite64, fsync and
   fdatasync on a file descriptor whose path (readlink of /proc/self/fd/N) contains SV_EIO_MATCH
   fail with errno EIO. The process turns the fault on and off by changing its own environment
   (os.environ in Python), so a test can fail I/O at a chosen moment. Compiled at test time:
       cc -shared -fPIC -o eio_shim.so _eio_shim.c -ldl
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int failing(int fd) {
    const char *on = getenv("SV_EIO");
    const char *match = getenv("SV_EIO_MATCH");
    char link[64], target[4096];
    ssize_t n;
    if (on == NULL || on[0] == '\0' || match == NULL || match[0] == '\0') return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, target, sizeof target - 1);
    if (n < 0) return 0;
    target[n] = '\0';
    return strstr(target, match) != NULL;
}

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef int (*sync_fn)(int);

#define REAL(name, type) static type real_##name; \
    if (!real_##name) real_##name = (type)dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write, write_fn);
    if (failing(fd)) { errno = EIO; return -1; }
    return real_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite, pwrite_fn);
    if (failing(fd)) { errno = EIO; return -1; }
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite64, pwrite_fn);
    if (failing(fd)) { errno = EIO; return -1; }
    return real_pwrite64(fd, buf, count, offset);
}

int fsync(int fd) {
    REAL(fsync, sync_fn);
    if (failing(fd)) { errno = EIO; return -1; }
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync, sync_fn);
    if (failing(fd)) { errno = EIO; return -1; }
    return real_fdatasync(fd);
}
