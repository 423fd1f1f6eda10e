/* ringfence: the init of a gVisor sandbox, run INSIDE it:
 *     init STATE_DIR CGROUPS PIDS MEMORY MOST [PORT=SOCKET ...]
 * Linked statically: its start is one exec under gVisor's ptrace platform (a Python init cost some 0.2 s).
 *
 * First, as the guest's root with the few capabilities it needs for this alone, it sets the sandbox's limits up in
 * gVisor's own cgroups (runsc 20221219 honours neither RLIMIT_NPROC nor a cgroup mount in the OCI spec, and a host
 * pids cgroup would count the Sentry's threads): gVisor's pids hierarchy at CGROUPS/pids with the sandbox's group
 * `box` limited to PIDS processes ("max": none), and a tracking hierarchy at CGROUPS/jobs where each command's
 * launcher makes a group of its own. Every cgroup file stays root's: only the launchers (the guest's root, without
 * CAP_DAC_OVERRIDE) write them, never the agent's uid. Then it drops every
 * capability for good (the bounding set first, under no_new_privs) and ignores SIGCHLD, so the orphans it inherits
 * are reaped. A step that fails is written to STATE_DIR/failed, and the init exits: the host says why at once.
 *
 * With a MEMORY limit (KiB, or "max"), it first forks the memory watcher, which keeps CAP_KILL alone: gVisor's release
 * in Debian (20221219) has no OOM killer, so a sandbox whose processes outgrow runsc's host cgroup is killed whole.
 * The host's limit is MEMORY plus room for gVisor's own kernel; the watcher reads the guest's use (/proc/meminfo,
 * every WATCH_MS near the limit, WATCH_IDLE_MS below), and once it reaches MEMORY it kills the largest process of a uid other than root, as the kernel's
 * OOM killer would. A process that grows faster than the room between two looks can still reach the host's limit,
 * and that still ends the sandbox whole.
 *
 * Then it relays: gVisor has its own network stack, so the bubblewrap bridge (the host making a listener inside the
 * sandbox's network namespace) cannot work. Instead it listens on 127.0.0.1:PORT inside and carries each connection
 * to the session's Unix socket bound into the sandbox (runsc --host-uds=open lets it connect to those, the only host
 * sockets it can see), at most MOST connections per route at once (a flood of connects would cost the host's proxies
 * file descriptors: the ones past the bound are closed at once). A direction is read only while its buffer has room,
 * and its far end is half-closed once it ended and every byte was written. With no routes it only waits. It writes
 * STATE_DIR/ready once it is set up and listens. Written by hand: the relay must be a static program with no
 * runtime to start, and no packaged tool keeps a bound of connections by closing the ones past it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PATH_SIZE 4096
#define MAX_ROUTES 8
#define BUFFER (256 * 1024) /* bytes of one direction read and not yet written */

static const char *state_dir;

/* STATE_DIR/name made with `text`, whole: written under a name of its own, then linked into place, so the host never
 * reads it half-written; an existing one is kept (the first failure is the one to say). */
static void write_marker(const char *name, const char *text) {
    char path[PATH_SIZE], draft[PATH_SIZE];
    snprintf(path, sizeof path, "%s/%s", state_dir, name);
    snprintf(draft, sizeof draft, "%s/.%s.%d", state_dir, name, (int)getpid());
    int fd = open(draft, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    (void)!write(fd, text, strlen(text));
    close(fd);
    (void)!link(draft, path);
    unlink(draft);
}

static void failed(const char *format, ...) {
    char said[1024];
    va_list args;
    va_start(args, format);
    int saved = errno;
    int length = vsnprintf(said, sizeof said - 64, format, args);
    va_end(args);
    if (length < 0 || length > (int)sizeof said - 65)
        length = length < 0 ? 0 : (int)sizeof said - 65;
    snprintf(said + length, 64, ": %s\n", strerror(saved));
    dprintf(2, "ringfence init: %s", said);
    write_marker("failed", said);
    exit(1);
}

static void put(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        failed("writing %s to %s", text, path);
    close(fd);
}

/* --- the memory watcher ------------------------------------------------------------------------------------------ */

#define WATCH_MS 5       /* between two looks once the guest uses three quarters of its limit */
#define WATCH_IDLE_MS 50 /* below that: at 1 GB/s, a quarter of a 256 MiB limit is 64 ms away, and KERNEL_ROOM more */

static long long meminfo_used_kib(void) {
    char text[4096];
    int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t size = read(fd, text, sizeof text - 1);
    close(fd);
    if (size <= 0)
        return -1;
    text[size] = '\0';
    char *total = strstr(text, "MemTotal:"), *available = strstr(text, "MemAvailable:");
    if (total == NULL || available == NULL)
        return -1;
    return strtoll(total + 9, NULL, 10) - strtoll(available + 13, NULL, 10);
}

/* The pid of the process with the most resident pages that is not root's (the agent's: the init, the watcher and the
 * launchers are root's), or 0 when there is none. */
static pid_t largest_process(void) {
    DIR *proc = opendir("/proc");
    if (proc == NULL)
        return 0;
    pid_t chosen = 0;
    long long most = -1;
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        char *end;
        long pid = strtol(entry->d_name, &end, 10);
        if (*end != '\0' || pid <= 1)
            continue;
        char path[64], text[128];
        struct stat owner;
        snprintf(path, sizeof path, "/proc/%ld", pid);
        if (stat(path, &owner) != 0 || owner.st_uid == 0)
            continue;
        snprintf(path, sizeof path, "/proc/%ld/statm", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t size = read(fd, text, sizeof text - 1);
        close(fd);
        if (size <= 0)
            continue;
        text[size] = '\0';
        long long resident = 0;
        if (sscanf(text, "%*s %lld", &resident) == 1 && resident > most) {
            most = resident;
            chosen = (pid_t)pid;
        }
    }
    closedir(proc);
    return chosen;
}

/* After a kill: until the victim is gone, then until gVisor has counted its memory back, so that a second process is
 * never ended for memory the first still held (under load, gVisor takes seconds to free a large process). Each wait
 * is at most SETTLE_MS; the second ends at once if the use grows again by GROWING_KIB (another process grows: the
 * watcher acts on it). */
#define SETTLE_MS 10000
#define GROWING_KIB (16 * 1024)
static void settle(pid_t victim, long long limit_kib, long long used_at_kill) {
    struct timespec step = {.tv_sec = 0, .tv_nsec = 5 * 1000000L};
    for (int waited = 0; waited < SETTLE_MS && kill(victim, 0) == 0; waited += 5)
        nanosleep(&step, NULL);
    for (int waited = 0; waited < SETTLE_MS; waited += 5) {
        long long used = meminfo_used_kib();
        if (used < limit_kib || used > used_at_kill + GROWING_KIB)
            return;
        nanosleep(&step, NULL);
    }
}

static void watch_memory(long long limit_kib) {
    for (;;) {
        long long used = meminfo_used_kib();
        if (used >= limit_kib) {
            pid_t victim = largest_process();
            if (victim > 0) {
                kill(victim, SIGKILL);
                dprintf(2, "ringfence init: the sandbox's memory (%lld KiB used of %lld) ended process %d\n", used,
                        limit_kib, (int)victim);
                settle(victim, limit_kib, used);
                continue;
            }
        }
        long milliseconds = used * 4 >= limit_kib * 3 ? WATCH_MS : WATCH_IDLE_MS;
        struct timespec pause_for = {.tv_sec = 0, .tv_nsec = milliseconds * 1000000L};
        nanosleep(&pause_for, NULL);
    }
}

/* Forks the watcher, which keeps CAP_KILL alone (its bounding set too), before the init drops everything. */
static void start_memory_watcher(const char *memory) {
    if (strcmp(memory, "max") == 0)
        return;
    char *end;
    long long limit_kib = strtoll(memory, &end, 10);
    if (*end != '\0' || limit_kib <= 0) {
        errno = EINVAL;
        failed("the memory limit %s", memory);
    }
    int said[2];
    if (pipe2(said, O_CLOEXEC) != 0)
        failed("starting the memory watcher");
    pid_t watcher = fork();
    if (watcher < 0)
        failed("starting the memory watcher");
    if (watcher > 0) { /* the sandbox is not ready until the watcher is: one byte once it holds its capability */
        close(said[1]);
        char ok;
        ssize_t got;
        while ((got = read(said[0], &ok, 1)) < 0 && errno == EINTR)
            ;
        close(said[0]);
        if (got != 1) {
            errno = ECHILD;
            failed("starting the memory watcher");
        }
        return;
    }
    close(said[0]);
    prctl(PR_SET_NAME, "memory-watcher", 0, 0, 0);
    for (int cap = 0; cap < 64; cap++)
        if (cap != CAP_KILL)
            prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].effective = data[0].permitted = 1u << CAP_KILL;
    if (syscall(SYS_capset, &header, data) != 0)
        failed("keeping the memory watcher's one capability");
    if (write(said[1], "k", 1) != 1)
        _exit(1);
    close(said[1]);
    watch_memory(limit_kib);
    _exit(1);
}

static void setup(const char *cgroups, const char *pids, const char *memory) {
    char path[PATH_SIZE];
    if (strlen(cgroups) > PATH_SIZE - 64) {
        errno = ENAMETOOLONG;
        failed("the cgroups' directory");
    }
    snprintf(path, sizeof path, "%s/pids", cgroups);
    if (mount("rf-pids", path, "cgroup", 0, "pids") != 0)
        failed("mounting gVisor's pids hierarchy at %s", path);
    snprintf(path, sizeof path, "%s/pids/box", cgroups);
    if (mkdir(path, 0755) != 0)
        failed("making the sandbox's group %s", path);
    if (strcmp(pids, "max") != 0) {
        snprintf(path, sizeof path, "%s/pids/box/pids.max", cgroups);
        put(path, pids);
    }
    snprintf(path, sizeof path, "%s/jobs", cgroups);
    if (mount("rf-jobs", path, "cgroup", 0, "cpuacct") != 0)
        failed("mounting the tracking hierarchy at %s", path);
    if (chmod(path, 0755) != 0) /* gVisor makes it 0555: the launchers, root's, make their groups in it */
        failed("letting the launchers make their groups in %s", path);
    start_memory_watcher(memory);
    for (int cap = 0; cap < 64; cap++) /* past the last capability the kernel knows: EINVAL, nothing to drop */
        prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data); /* effective, permitted and inheritable: all empty */
    if (syscall(SYS_capset, &header, data) != 0)
        failed("dropping the init's capabilities");
    signal(SIGCHLD, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
}

/* --- the relay ---------------------------------------------------------------------------------------------------- */

struct half { /* one direction of a connection: bytes read from `source`, not yet written to `sink` */
    int source, sink;
    char *buffer;
    size_t start, end;
    int ended, shut; /* its source said EOF; its sink was half-closed after the last byte */
};

struct connection {
    int route;
    struct half half[2];
    struct connection *next;
};

struct route {
    int listener, held;
    struct sockaddr_un target;
};

static struct route routes[MAX_ROUTES];
static int route_count, most;
static struct connection *connections;

static void listen_on(struct route *route, int port, const char *path) {
    if (strlen(path) >= sizeof route->target.sun_path) {
        errno = ENAMETOOLONG;
        failed("the socket of port %d", port);
    }
    route->target.sun_family = AF_UNIX;
    strcpy(route->target.sun_path, path);
    route->listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int yes = 1;
    setsockopt(route->listener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (route->listener < 0 || bind(route->listener, (struct sockaddr *)&address, sizeof address) != 0 ||
        listen(route->listener, 512) != 0)
        failed("listening on 127.0.0.1:%d", port);
}

static void close_connection(struct connection *gone) {
    for (struct connection **at = &connections; *at; at = &(*at)->next)
        if (*at == gone) {
            *at = gone->next;
            break;
        }
    routes[gone->route].held--;
    close(gone->half[0].source);
    close(gone->half[0].sink);
    free(gone->half[0].buffer); /* both halves' buffers, in one allocation */
    free(gone);
}

static void accept_on(int index) {
    struct route *route = &routes[index];
    for (;;) {
        int client = accept4(route->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (client < 0)
            return;
        if (route->held >= most) {
            close(client);
            continue;
        }
        int up = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        /* a local socket: connected at once, or refused (absent, or its backlog full) */
        if (up < 0 || connect(up, (struct sockaddr *)&route->target, sizeof route->target) != 0) {
            if (up >= 0)
                close(up);
            close(client);
            continue;
        }
        struct connection *made = calloc(1, sizeof *made);
        char *buffers = made ? malloc(2 * BUFFER) : NULL;
        if (buffers == NULL) {
            free(made);
            close(up);
            close(client);
            continue;
        }
        made->route = index;
        made->half[0] = (struct half){.source = client, .sink = up, .buffer = buffers};
        made->half[1] = (struct half){.source = up, .sink = client, .buffer = buffers + BUFFER};
        made->next = connections;
        connections = made;
        route->held++;
    }
}

/* What `fd` is waited for: read while a half it feeds has room and has not ended; write while bytes wait for it. */
static short wanted(const struct connection *c, int fd) {
    short events = 0;
    for (int i = 0; i < 2; i++) {
        const struct half *h = &c->half[i];
        if (h->source == fd && !h->ended && h->end < BUFFER)
            events |= POLLIN;
        if (h->sink == fd && h->end > h->start)
            events |= POLLOUT;
    }
    return events;
}

/* Moves what can move on a connection one of whose ends is ready: 0, or -1 once it is over (then closed). */
static int step(struct connection *c) {
    for (int i = 0; i < 2; i++) {
        struct half *h = &c->half[i];
        if (!h->ended && h->end < BUFFER) {
            ssize_t got = recv(h->source, h->buffer + h->end, BUFFER - h->end, 0);
            if (got > 0)
                h->end += (size_t)got;
            else if (got == 0)
                h->ended = 1;
            else if (errno != EAGAIN && errno != EINTR)
                return -1; /* reset, or a peer gone: the whole connection ends */
        }
        if (h->end > h->start) {
            ssize_t sent = send(h->sink, h->buffer + h->start, h->end - h->start, MSG_NOSIGNAL);
            if (sent > 0)
                h->start += (size_t)sent;
            else if (sent < 0 && errno != EAGAIN && errno != EINTR)
                return -1;
            if (h->start == h->end)
                h->start = h->end = 0;
        }
        if (h->ended && h->start == h->end && !h->shut) {
            shutdown(h->sink, SHUT_WR);
            h->shut = 1;
        }
    }
    return c->half[0].shut && c->half[1].shut ? -1 : 0;
}

static void relay(void) {
    static struct pollfd waits[MAX_ROUTES + 4 * 1024 + 8];
    static struct connection *owner[MAX_ROUTES + 4 * 1024 + 8];
    const size_t room = sizeof waits / sizeof waits[0];
    for (;;) {
        size_t count = 0;
        for (int r = 0; r < route_count; r++) {
            waits[count] = (struct pollfd){.fd = routes[r].listener, .events = POLLIN};
            owner[count++] = NULL;
        }
        for (struct connection *c = connections; c && count + 2 <= room; c = c->next)
            for (int end = 0; end < 2; end++) {
                int fd = c->half[end].source;
                short events = wanted(c, fd);
                waits[count] = (struct pollfd){.fd = events ? fd : -1, .events = events};
                owner[count++] = c;
            }
        if (poll(waits, count, -1) < 0)
            continue;
        for (size_t i = 0; i < (size_t)route_count; i++)
            if (waits[i].revents)
                accept_on((int)i);
        struct connection *last = NULL;
        for (size_t i = (size_t)route_count; i < count; i++) {
            struct connection *c = owner[i];
            if (!waits[i].revents || c == last)
                continue; /* a connection is stepped once a round, whichever end woke it */
            last = c;
            if (step(c) != 0)
                close_connection(c);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 6) {
        dprintf(2, "ringfence init: usage: init STATE_DIR CGROUPS PIDS MEMORY MOST [PORT=SOCKET ...]\n");
        return 2;
    }
    state_dir = argv[1];
    most = atoi(argv[5]);
    setup(argv[2], argv[3], argv[4]);
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0) { /* two descriptors a connection, MOST a route */
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    for (int i = 6; i < argc; i++) {
        char *equals = strchr(argv[i], '=');
        if (equals == NULL || route_count == MAX_ROUTES) {
            errno = EINVAL;
            failed("the route %s", argv[i]);
        }
        *equals = '\0';
        listen_on(&routes[route_count++], atoi(argv[i]), equals + 1);
    }
    write_marker("ready", "ready\n");
    if (route_count > 0)
        relay();
    for (;;)
        pause();
}
