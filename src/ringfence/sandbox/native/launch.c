/* ringfence: the launcher of every command in a gVisor sandbox, run INSIDE it:
 *     launch CGROUPS FILTER UID DIRECTORY N NAME=VALUE... ARGV...
 * The command's environment is its N arguments after DIRECTORY, never the launcher's own (the base environment
 * alone). Linked statically: no dynamic loader runs before the limits are set (LD_AUDIT, LD_PRELOAD and the like act
 * on nothing here), and a start costs one exec under gVisor's ptrace platform, not a Python start (some 100 ms).
 *
 * `runsc exec` starts a process in the sandbox's root cgroups, outside any limit, and a process that a command leaves
 * behind (a daemon, `cmd &`) is re-parented to the sandbox's init: gVisor (20221219) honours neither RLIMIT_NPROC nor
 * PR_SET_CHILD_SUBREAPER, and keeps no per-command pid namespace. So each command starts here. The launcher runs as
 * the guest's root with four capabilities (KILL, SETUID, SETGID, SETPCAP) and no other privilege (no_new_privs; the
 * cgroup files are root's, the rest of the system is read-only or the agent's): the agent's uid can neither signal,
 * trace nor change it, nor write any cgroup file.
 * - It joins the sandbox's process-limited group (CGROUPS/pids/box, whose limit only the init could set) before
 *   anything of the command runs, so every process of it counts against the limit.
 * - It makes a group of its own in the tracking hierarchy (CGROUPS/jobs/c<pid>) and joins it: a command's processes
 *   are the members of that group, whoever their parent is, and none of them can leave it.
 * - Its child installs the seccomp program in FILTER (bubblewrap's, ringfence.sandbox.seccomp_filter, compiled by
 *   the host), so the same calls are refused in every backend (S-BOX B8): runsc's OCI seccomp does not reach
 *   `runsc exec`'s processes in this release. Then it drops every capability, the bounding set's too, becomes UID,
 *   enters DIRECTORY and executes the command.
 * - It waits for the command; then it kills what is left in its group (the daemons, which would otherwise outlive the
 *   command and hold its output open) and exits with the command's code (128+N for signal N).
 * Written by hand: no tool starts a process inside a gVisor cgroup.
 * Exit codes of its own: 125 (the limits could not be set: nothing ran), 127 (the command could not be started).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define SWEEPS 100   /* a fork bomb is bounded by the process limit; each sweep kills every member it saw */

static char listing[1 << 20]; /* a group's cgroup.procs, read whole */

/* `format` made into `into` (PATH_SIZE bytes): -1 and ENAMETOOLONG where it does not fit, never a cut path */
#define PATH_SIZE 4096
static int path_of(char *into, const char *format, ...) {
    va_list args;
    va_start(args, format);
    int length = vsnprintf(into, PATH_SIZE, format, args);
    va_end(args);
    if (length < 0 || length >= PATH_SIZE) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

static int put(const char *path, long value) {
    char text[24];
    int length = snprintf(text, sizeof text, "%ld", value);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t written = write(fd, text, (size_t)length);
    int saved = errno;
    close(fd);
    errno = saved;
    return written == length ? 0 : -1;
}

static ssize_t read_whole(const char *path, char *into, size_t most) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t have = 0;
    for (;;) {
        ssize_t got = read(fd, into + have, most - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return got < 0 ? -1 : (ssize_t)have;
        }
        have += (size_t)got;
        if (have == most) { /* larger than any filter or listing this launcher takes */
            close(fd);
            errno = EFBIG;
            return -1;
        }
    }
}

/* Installs the BPF program in `path` on this process (and so on the command it starts); no_new_privs is the
 * process spec's already. */
static int seccomp(const char *path) {
    static struct sock_filter code[BPF_MAXINSNS];
    ssize_t size = read_whole(path, (char *)code, sizeof code);
    if (size < 0)
        return -1;
    if (size == 0 || size % (ssize_t)sizeof code[0] != 0) {
        errno = EINVAL;
        return -1;
    }
    struct sock_fprog program = {.len = (unsigned short)(size / (ssize_t)sizeof code[0]), .filter = code};
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0);
}

static int limits_failed(const char *what) {
    dprintf(2, "ringfence: the command could not be given its sandbox's limits: %s: %s\n", what, strerror(errno));
    return 125;
}

/* Kills every member of the group `job` but this launcher, until none is left or SWEEPS passed: gVisor
 * regenerates cgroup.procs on every read, so it is read whole, in one call, never spliced from two lists. Every
 * member can be killed: only the launcher writes the group (it is root's), and it holds CAP_KILL. */
static void sweep(const char *job, pid_t me) {
    char procs[PATH_SIZE];
    if (path_of(procs, "%s/cgroup.procs", job) != 0)
        return;
    for (int round = 0; round < SWEEPS; round++) {
        ssize_t size = read_whole(procs, listing, sizeof listing - 1);
        if (size < 0)
            return;
        listing[size] = '\0';
        int left = 0;
        for (char *cursor = listing, *end; *cursor; cursor = end) {
            long pid = strtol(cursor, &end, 10);
            if (end == cursor)
                break;
            if (pid > 0 && pid != me) {
                left = 1;
                kill((pid_t)pid, SIGKILL);
            }
        }
        if (!left)
            return;
    }
}

/* In the child, before the command: the filter (while the child may still set it up as it likes), every capability
 * dropped (the bounding set too), the agent's uid and group, its directory; then the command. Never returns. */
static void become_the_command(const char *filter, uid_t uid, const char *directory, char **command, char **env) {
    if (seccomp(filter) != 0)
        _exit(limits_failed("installing the system call filter"));
    for (int cap = 0; cap < 64; cap++) /* past the last capability the kernel knows: EINVAL, nothing to drop */
        prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    if (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0)
        _exit(limits_failed("becoming the agent's uid"));
    if (chdir(directory) != 0) {
        dprintf(2, "ringfence: the command's directory %s: %s\n", directory, strerror(errno));
        _exit(125);
    }
    execvpe(command[0], command, env);
    dprintf(2, "ringfence: %s: %s\n", command[0], strerror(errno));
    _exit(127);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        dprintf(2, "ringfence: usage: launch CGROUPS FILTER UID DIRECTORY N NAME=VALUE... ARGV...\n");
        return 125;
    }
    const char *cgroups = argv[1], *filter = argv[2], *directory = argv[4];
    char *end;
    long uid = strtol(argv[3], &end, 10), count;
    if (*end != '\0' || uid <= 0) {
        dprintf(2, "ringfence: launch: the agent's uid %s is not a uid above 0\n", argv[3]);
        return 125;
    }
    count = strtol(argv[5], &end, 10);
    if (*end != '\0' || count < 0 || count > argc - 7) {
        dprintf(2, "ringfence: launch: the environment's count %s does not fit its arguments\n", argv[5]);
        return 125;
    }
    char **env = calloc((size_t)count + 1, sizeof *env);
    if (env == NULL)
        return limits_failed("memory");
    memcpy(env, argv + 6, (size_t)count * sizeof *env);
    char **command = argv + 6 + count;

    pid_t me = getpid();
    char path[PATH_SIZE], job[PATH_SIZE];
    if (path_of(path, "%s/pids/box/cgroup.procs", cgroups) != 0 || put(path, me) != 0)
        return limits_failed("joining the process limit");
    if (path_of(job, "%s/jobs/c%d", cgroups, (int)me) != 0 || mkdir(job, 0755) != 0)
        return limits_failed("making the command's group");
    if (path_of(path, "%s/cgroup.procs", job) != 0 || put(path, me) != 0)
        return limits_failed("joining the command's group");

    int code;
    pid_t child = fork();
    if (child < 0) {
        dprintf(2, "ringfence: %s: %s\n", command[0], strerror(errno));
        code = 127;
    } else if (child == 0) {
        become_the_command(filter, (uid_t)uid, directory, command, env);
        return 127; /* not reached */
    } else {
        int status = 0;
        pid_t waited;
        while ((waited = waitpid(child, &status, 0)) < 0 && errno == EINTR)
            ;
        if (waited < 0) {
            dprintf(2, "ringfence: waiting for %s: %s\n", command[0], strerror(errno));
            code = 125;
        } else {
            code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        }
    }
    sweep(job, me);
    if (path_of(path, "%s/jobs/cgroup.procs", cgroups) == 0)
        put(path, me);
    rmdir(job); /* a member the sweeps could not end: the group goes with the sandbox */
    return code;
}
