/* ringfence: loaded into every dynamically linked program of a gVisor sandbox, through /etc/ld.so.preload.
 *
 * gVisor's release in Debian (20221219) answers EINVAL to AT_NO_AUTOMOUNT in statx and fstatat, a flag that
 * coreutils (ls, stat, cp -a, du, find...) pass on every call: without this, `ls` fails on every file. Nothing inside
 * a gVisor sandbox is an automount point, so the flag means nothing there: it is dropped and the call goes on to
 * glibc's own function. Nothing else is changed. A program linked statically, or that makes the system call itself,
 * still gets gVisor's answer. This is compatibility, not a boundary: the sandbox's processes may unset it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

typedef int (*statx_call)(int, const char *, int, unsigned int, struct statx *);
typedef int (*fstatat_call)(int, const char *, struct stat *, int);
typedef int (*fstatat64_call)(int, const char *, struct stat64 *, int);
typedef int (*fxstatat_call)(int, int, const char *, struct stat *, int);
typedef int (*fxstatat64_call)(int, int, const char *, struct stat64 *, int);

#define GLIBC(type, name)                                                                                             \
    static type real;                                                                                                 \
    if (!real)                                                                                                        \
        real = (type)dlsym(RTLD_NEXT, name);                                                                      \
    if (!real) {                                                                                                      \
        errno = ENOSYS;                                                                                               \
        return -1;                                                                                                    \
    }

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *into) {
    GLIBC(statx_call, "statx")
    return real(dirfd, path, flags & ~AT_NO_AUTOMOUNT, mask, into);
}

int fstatat(int dirfd, const char *path, struct stat *into, int flags) {
    GLIBC(fstatat_call, "fstatat")
    return real(dirfd, path, into, flags & ~AT_NO_AUTOMOUNT);
}

/* what programs built with large-file offsets call (coreutils), the same function on 64-bit hosts */
int fstatat64(int dirfd, const char *path, struct stat64 *into, int flags) {
    GLIBC(fstatat64_call, "fstatat64")
    return real(dirfd, path, into, flags & ~AT_NO_AUTOMOUNT);
}

/* what programs built against glibc before 2.33 call (declared here: glibc's headers no longer do) */
int __fxstatat(int, int, const char *, struct stat *, int);
int __fxstatat64(int, int, const char *, struct stat64 *, int);

int __fxstatat(int version, int dirfd, const char *path, struct stat *into, int flags) {
    GLIBC(fxstatat_call, "__fxstatat")
    return real(version, dirfd, path, into, flags & ~AT_NO_AUTOMOUNT);
}

int __fxstatat64(int version, int dirfd, const char *path, struct stat64 *into, int flags) {
    GLIBC(fxstatat64_call, "__fxstatat64")
    return real(version, dirfd, path, into, flags & ~AT_NO_AUTOMOUNT);
}
