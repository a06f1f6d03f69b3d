/*
 * Integration test harness: see harness.h for the contract. Diagnostics go to
 * stderr prefixed "rdt:" so they stand out in ctest's output.
 */
#include "harness.h"

#include "cmocka_all.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RDT_START_TIMEOUT_MS 15000
#define RDT_STOP_TIMEOUT_MS  20000
#define RDT_HTTP_TIMEOUT_MS  30000
#define RDT_PROBE_TIMEOUT_MS 1000
#define RDT_LOG_TAIL_LINES   60

/* ---- process-wide setup --------------------------------------------------- */

static void rdt_init(void)
{
    static bool done;
    if (done) {
        return;
    }
    done = true;
    curl_global_init(CURL_GLOBAL_ALL);
    atexit(curl_global_cleanup);
    /* A daemon that dies mid-request must fail the test, not kill it. */
    signal(SIGPIPE, SIG_IGN);
}

int64_t rdt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rdt_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- growable buffers --------------------------------------------------------- */

struct rdt_buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Appends `n` bytes and keeps the buffer NUL-terminated. 0 or -1. */
static int buf_append(struct rdt_buf *b, const char *src, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *data = realloc(b->data, cap);
        if (!data) {
            return -1;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

/* Reads all of `fd` until EOF. 0 or -1. */
static int read_fd_all(int fd, struct rdt_buf *b)
{
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n == 0) {
            return 0;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (buf_append(b, chunk, (size_t)n) != 0) {
            return -1;
        }
    }
}

/* ---- files and directories ------------------------------------------------------ */

int rdt_tmpdir(char *buf, size_t len)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base) {
        base = "/tmp";
    }
    int n = snprintf(buf, len, "%s/recoveryd-test-XXXXXX", base);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "rdt: TMPDIR path too long: %s\n", base);
        return -1;
    }
    if (!mkdtemp(buf)) {
        fprintf(stderr, "rdt: mkdtemp %s: %s\n", buf, strerror(errno));
        return -1;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0) {
        fprintf(stderr, "rdt: remove %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int rdt_rmtree(const char *dir)
{
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        fprintf(stderr, "rdt: could not remove %s completely\n", dir);
        return -1;
    }
    return 0;
}

/* True when nothing holds TCP `port` on 127.0.0.1 right now. */
static bool port_free(uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/* Lowest port the kernel hands out to outgoing connections (32768 if unknown). */
static unsigned ephemeral_low(void)
{
    unsigned low = 32768, high = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
    if (f) {
        if (fscanf(f, "%u %u", &low, &high) != 2) {
            low = 32768;
        }
        fclose(f);
    }
    return low;
}

int rdt_hold_port(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int one = 1; /* past the daemon's connections in TIME_WAIT, as the daemon's bind is */
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(*port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/*
 * Ports are drawn below the ephemeral range: a port the kernel picked for us
 * (bind to port 0) may meanwhile become the source port of some outgoing
 * connection, and then the daemon could not bind it on a restart.
 */
int rdt_free_ports(uint16_t *a, uint16_t *b)
{
    enum { LOW = 20000, TRIES = 200 };
    unsigned high = ephemeral_low();
    if (high <= LOW + 1000) {
        fprintf(stderr, "rdt: no port range below the ephemeral ports (%u)\n", high);
        return -1;
    }
    uint16_t got[2] = {0, 0};
    int n = 0;
    for (int i = 0; i < TRIES && n < 2; i++) {
        uint32_t r;
        if (getrandom(&r, sizeof r, 0) != sizeof r) {
            r = (uint32_t)rdt_now_ms() * 2654435761u + (uint32_t)getpid() + (uint32_t)i;
        }
        uint16_t port = (uint16_t)(LOW + r % (high - LOW));
        if ((n == 0 || port != got[0]) && port_free(port)) {
            got[n++] = port;
        }
    }
    if (n < 2) {
        fprintf(stderr, "rdt: found no two free ports in [%u, %u)\n", (unsigned)LOW, high);
        return -1;
    }
    *a = got[0];
    *b = got[1];
    return 0;
}

/* rdt_force_next_ports(): 0 when drawn; `forced_env_read` once RDT_FORCE_PORTS was read. */
static uint16_t forced_ports[2];
static bool forced_env_read;

void rdt_force_next_ports(uint16_t api, uint16_t raft)
{
    forced_env_read = true;
    forced_ports[0] = api;
    forced_ports[1] = raft;
}

/* Two ports for a new daemon: drawn, or those forced (once). 0 or -1. */
static int pick_ports(uint16_t *api, uint16_t *raft)
{
    if (!forced_env_read) {
        forced_env_read = true;
        const char *env = getenv("RDT_FORCE_PORTS");
        unsigned a = 0, r = 0;
        if (env && *env && (sscanf(env, "%u,%u", &a, &r) < 1 || a > 65535 || r > 65535)) {
            fprintf(stderr, "rdt: RDT_FORCE_PORTS: expected API[,RAFT], got '%s'\n", env);
            return -1;
        }
        forced_ports[0] = (uint16_t)a;
        forced_ports[1] = (uint16_t)r;
    }
    uint16_t want[2] = {forced_ports[0], forced_ports[1]};
    forced_ports[0] = forced_ports[1] = 0;
    for (;;) {
        if (rdt_free_ports(api, raft) != 0)
            return -1;
        if (want[0] != 0)
            *api = want[0];
        if (want[1] != 0)
            *raft = want[1];
        if (*api != *raft)
            break;
        if (want[0] != 0 && want[1] != 0) {
            fprintf(stderr, "rdt: forced ports: API and raft are both %u\n", (unsigned)*api);
            return -1;
        }
    }
    if (want[0] != 0 || want[1] != 0)
        fprintf(stderr, "rdt: forced ports: API %u, raft %u\n", (unsigned)*api, (unsigned)*raft);
    return 0;
}

static char *read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    struct rdt_buf b = {0};
    int rc = read_fd_all(fd, &b);
    close(fd);
    if (rc != 0 || buf_append(&b, "", 0) != 0) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

char *rdt_proc_log(const struct rdt_proc *p)
{
    return read_file(p->log_path);
}

bool rdt_proc_log_has(const struct rdt_proc *p, const char *needle)
{
    char *log = rdt_proc_log(p);
    bool found = log != NULL && strstr(log, needle) != NULL;
    free(log);
    return found;
}

int rdt_await_log(struct rdt_proc *p, const char *needle, int timeout_ms)
{
    for (int64_t until = rdt_now_ms() + timeout_ms;;) {
        /* Whether it runs, before the log is read: a daemon that logs the
         * line and exits is not taken for one that never did. */
        bool alive = rdt_proc_alive(p);
        if (rdt_proc_log_has(p, needle))
            return 0;
        if (!alive || rdt_now_ms() >= until) {
            fprintf(stderr, "no \"%s\" in the log of %s%s\n", needle, p->dir,
                    alive ? "" : " (it exited)");
            rdt_proc_print_log_tail(p, 40);
            return -1;
        }
        rdt_sleep_ms(20);
    }
}

void rdt_proc_print_log_tail(const struct rdt_proc *p, int lines)
{
    char *log = rdt_proc_log(p);
    if (!log) {
        fprintf(stderr, "rdt: no log at %s\n", p->log_path);
        return;
    }
    const char *start = log;
    size_t len = strlen(log);
    int seen = 0;
    for (size_t i = len; i > 0; i--) {
        /* The newline ending the last line does not count as a separator. */
        if (log[i - 1] == '\n' && i != len && ++seen == lines) {
            start = log + i;
            break;
        }
    }
    fprintf(stderr, "rdt: ---- last %d lines of %s ----\n%s", lines, p->log_path, start);
    if (len > 0 && log[len - 1] != '\n') {
        fputc('\n', stderr);
    }
    fprintf(stderr, "rdt: ---- end of log ----\n");
    free(log);
}

static bool is_error_line(const char *line, size_t len)
{
    char buf[1024];
    size_t n = len < sizeof buf - 1 ? len : sizeof buf - 1;
    memcpy(buf, line, n);
    buf[n] = '\0';
    if (strncmp(buf, "level=error", 11) == 0 || strstr(buf, " level=error")) {
        return true;
    }
    /* The same in JSON lines (logging.format: json). */
    if (strncmp(buf, "{\"ts\":", 6) == 0 && strstr(buf, ",\"level\":\"error\",")) {
        return true;
    }
    if (strstr(buf, "ERROR: AddressSanitizer") || strstr(buf, "ERROR: LeakSanitizer")) {
        return true;
    }
    /* UBSan's "file.c:12:5: runtime error: ..." (not a structured line). */
    return strncmp(buf, "ts=", 3) != 0 && strstr(buf, ": runtime error: ") != NULL;
}

char *rdt_log_error_line(const char *log)
{
    const char *line = log;
    while (line && *line) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (is_error_line(line, len)) {
            return strndup(line, len);
        }
        line = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* ---- processes ----------------------------------------------------------------- */

static int decode_status(int st)
{
    if (WIFEXITED(st)) {
        return WEXITSTATUS(st);
    }
    if (WIFSIGNALED(st)) {
        return 128 + WTERMSIG(st);
    }
    return -1;
}

/*
 * In the child between fork and exec: only async-signal-safe calls. Dies with
 * the test (PDEATHSIG) so a test killed by ctest's timeout leaves no daemon.
 */
static void child_exec(char *const argv[], const char *cwd, int in_fd, int out_fd, int err_fd,
                       pid_t parent, int netns_fd, unsigned max_files)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (max_files > 0) {
        struct rlimit lim = {.rlim_cur = max_files, .rlim_max = max_files};
        if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
            _exit(127);
        }
    }
    if (getppid() != parent || (cwd && chdir(cwd) != 0)) {
        _exit(127);
    }
    /* Into the daemon's network namespace (rdt_proc.netns), if it has one. */
    if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) {
        static const char msg[] = "rdt: setns into the daemon's network namespace failed\n";
        ssize_t ignored = write(err_fd, msg, sizeof msg - 1);
        (void)ignored;
        _exit(127);
    }
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) {
        _exit(127);
    }
    close_range(3, ~0U, 0);
    /* Ignored signals survive exec: give the daemon default dispositions. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < 32; sig++) {
        sigaction(sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], argv);
    static const char msg[] = "rdt: exec of the daemon failed\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
}

/* The address the daemon listens on (API and raft). */
static const char *proc_host(const struct rdt_proc *p)
{
    return p->host[0] ? p->host : "127.0.0.1";
}

/* Opens the network namespace `name` made by `ip netns add` (O_CLOEXEC). */
static int open_netns(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "/run/netns/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(path, sizeof path, "/var/run/netns/%s", name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        fprintf(stderr, "rdt: network namespace %s: %s\n", name, strerror(errno));
    }
    return fd;
}

/* The daemon's command line for `p` (with `extra`, or none when NULL or ""). */
#define PROC_ARGC 13
static void proc_argv(struct rdt_proc *p, const char *extra, char listen_arg[80],
                      char *argv[PROC_ARGC])
{
    snprintf(listen_arg, 80, "%s:%u", proc_host(p), (unsigned)p->port);
    char *const a[PROC_ARGC] = {p->binary[0] ? p->binary : (char *)RD_BINARY,
                                (char *)"--config",
                                p->config_path,
                                (char *)"--listen",
                                listen_arg,
                                (char *)"--data-dir",
                                p->data_dir,
                                (char *)"--plugins-dir",
                                p->plugins_dir[0] ? p->plugins_dir : (char *)rdt_plugins_dir(),
                                (char *)"--policies-dir",
                                p->policies_dir[0] ? p->policies_dir
                                                   : (char *)RD_SOURCE_DIR "/policies",
                                extra && extra[0] ? (char *)extra : NULL,
                                NULL};
    memcpy(argv, a, sizeof(a));
}

int rdt_proc_run_once(struct rdt_proc *p, const char *extra, int timeout_ms, char **out, char **err)
{
    char listen_arg[80], *argv[PROC_ARGC];
    proc_argv(p, extra, listen_arg, argv);
    return rdt_run(argv, timeout_ms, out, err);
}

static int spawn_daemon(struct rdt_proc *p)
{
    char listen_arg[80], *argv[PROC_ARGC];
    proc_argv(p, p->extra_arg, listen_arg, argv);
    const char *bin = argv[0];

    int netns_fd = -1;
    if (p->netns[0] && (netns_fd = open_netns(p->netns)) < 0) {
        return -1;
    }
    int log_fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log_fd < 0 || null_fd < 0) {
        fprintf(stderr, "rdt: open %s: %s\n", p->log_path, strerror(errno));
        if (log_fd >= 0) {
            close(log_fd);
        }
        if (null_fd >= 0) {
            close(null_fd);
        }
        if (netns_fd >= 0) {
            close(netns_fd);
        }
        return -1;
    }
    off_t mark = lseek(log_fd, 0, SEEK_END);
    p->log_mark_ = mark > 0 ? (long)mark : 0;
    if (p->netns[0]) {
        dprintf(log_fd, "rdt: ---- starting %s --listen %s in network namespace %s ----\n", bin,
                listen_arg, p->netns);
    } else {
        dprintf(log_fd, "rdt: ---- starting %s --listen %s ----\n", bin, listen_arg);
    }

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* In its own directory, so relative paths never land in the build tree. */
        child_exec(argv, p->dir, null_fd, log_fd, log_fd, parent, netns_fd, p->max_files);
    }
    int saved = errno;
    close(log_fd);
    close(null_fd);
    if (netns_fd >= 0) {
        close(netns_fd);
    }
    if (pid < 0) {
        fprintf(stderr, "rdt: fork: %s\n", strerror(saved));
        return -1;
    }
    p->pid = pid;
    return 0;
}

bool rdt_proc_alive(struct rdt_proc *p)
{
    if (p->pid <= 0) {
        return false;
    }
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == 0) {
        return true;
    }
    if (r == p->pid) {
        p->exit_code = decode_status(st);
    }
    p->pid = 0;
    return false;
}

int rdt_proc_signal(struct rdt_proc *p, int sig)
{
    if (p->pid <= 0) {
        fprintf(stderr, "rdt: signal %d: the daemon is not running\n", sig);
        return -1;
    }
    if (kill(p->pid, sig) != 0) {
        fprintf(stderr, "rdt: kill(%d, %d): %s\n", (int)p->pid, sig, strerror(errno));
        return -1;
    }
    return 0;
}

int rdt_proc_kill9(struct rdt_proc *p)
{
    if (rdt_proc_signal(p, SIGKILL) != 0) {
        return -1;
    }
    int st;
    pid_t r;
    do {
        r = waitpid(p->pid, &st, 0);
    } while (r < 0 && errno == EINTR);
    if (r == p->pid) {
        p->exit_code = decode_status(st);
    }
    p->pid = 0;
    return r < 0 ? -1 : 0;
}

int rdt_proc_wait(struct rdt_proc *p, int timeout_ms, int *exit_status)
{
    if (p->pid <= 0) {
        fprintf(stderr, "rdt: wait: the daemon is not running\n");
        return -1;
    }
    int64_t deadline = rdt_now_ms() + timeout_ms;
    int delay = 2;
    for (;;) {
        if (!rdt_proc_alive(p)) {
            if (exit_status) {
                *exit_status = p->exit_code;
            }
            return p->exit_code;
        }
        if (rdt_now_ms() >= deadline) {
            return -1;
        }
        rdt_sleep_ms(delay);
        delay = delay < 50 ? delay * 2 : 50;
    }
}

int rdt_proc_stop(struct rdt_proc *p, int *exit_status)
{
    if (rdt_proc_signal(p, SIGTERM) != 0) {
        return -1;
    }
    int code = rdt_proc_wait(p, RDT_STOP_TIMEOUT_MS, exit_status);
    if (code < 0) {
        fprintf(stderr, "rdt: the daemon did not exit within %d ms of SIGTERM\n",
                RDT_STOP_TIMEOUT_MS);
        rdt_proc_print_log_tail(p, RDT_LOG_TAIL_LINES);
        rdt_proc_kill9(p);
        return -1;
    }
    if (code != 0) /* a sanitizer's report, a failed shutdown: show why */
        rdt_proc_print_log_tail(p, RDT_LOG_TAIL_LINES);
    return code;
}

/*
 * False when the listening socket on `p`'s API port is not the daemon's: the
 * port was taken by another process (another test's daemon, whose /health
 * answers just as well) before the daemon bound it, and the daemon is about
 * to exit. Read from the daemon's own /proc (its network namespace's
 * sockets, its descriptors); true when they cannot be read.
 */
static bool holds_api_port(const struct rdt_proc *p)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/net/tcp", (int)p->pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return true;
    unsigned long inode = 0;
    while (inode == 0 && fgets(line, sizeof line, f) != NULL) {
        unsigned port, st;
        unsigned long ino;
        /* "sl: local_ip:PORT rem_ip:port st tx:rx tr:when retrnsmt uid timeout inode" */
        if (sscanf(line, " %*d: %*x:%x %*x:%*x %x %*x:%*x %*x:%*x %*x %*u %*u %lu", &port, &st,
                   &ino) == 3 &&
            port == p->port && st == 0x0A /* LISTEN */)
            inode = ino;
    }
    fclose(f);
    if (inode == 0)
        return false; /* nobody listens there in its namespace (yet) */
    char want[64];
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    snprintf(path, sizeof path, "/proc/%d/fd", (int)p->pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return true;
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d)) != NULL;) {
        char fd_path[320], target[64];
        snprintf(fd_path, sizeof fd_path, "%s/%s", path, e->d_name);
        ssize_t n = readlink(fd_path, target, sizeof target - 1);
        found = n > 0 && (target[n] = '\0', strcmp(target, want) == 0);
    }
    closedir(d);
    return found;
}

static int wait_health(struct rdt_proc *p)
{
    char url[96];
    snprintf(url, sizeof url, "%s/health", p->base_url);
    int64_t deadline = rdt_now_ms() + RDT_START_TIMEOUT_MS;
    int delay = 5;
    for (;;) {
        if (!rdt_proc_alive(p)) {
            fprintf(stderr, "rdt: recoveryd exited with %d before answering /health\n",
                    p->exit_code);
            return -1;
        }
        struct rdt_resp r = {0};
        CURL *e = rdt_easy_new(RDT_H1, "GET", url, NULL, 0, RDT_PROBE_TIMEOUT_MS, &r);
        int rc = e ? rdt_easy_finish(e, curl_easy_perform(e), &r) : -1;
        curl_easy_cleanup(e);
        long status = r.status;
        rdt_resp_free(&r);
        /* Only the daemon's own answer counts (not that of another that
         * took its port). */
        if (rc == 0 && status == 200 && holds_api_port(p)) {
            return 0;
        }
        if (rdt_now_ms() >= deadline) {
            fprintf(stderr, "rdt: GET %s did not answer 200 within %d ms (last status %ld)\n", url,
                    RDT_START_TIMEOUT_MS, status);
            return -1;
        }
        rdt_sleep_ms(delay);
        delay = delay < 200 ? delay * 2 : 200;
    }
}

static int launch(struct rdt_proc *p)
{
    if (spawn_daemon(p) != 0) {
        return -1;
    }
    if (wait_health(p) != 0) {
        rdt_proc_print_log_tail(p, RDT_LOG_TAIL_LINES);
        if (p->pid > 0) {
            rdt_proc_kill9(p);
        }
        return -1;
    }
    return 0;
}

static int proc_init(struct rdt_proc *p)
{
    if (rdt_tmpdir(p->dir, sizeof p->dir) != 0) {
        return -1;
    }
    snprintf(p->data_dir, sizeof p->data_dir, "%s/data", p->dir);
    snprintf(p->config_path, sizeof p->config_path, "%s/config.yaml", p->dir);
    snprintf(p->log_path, sizeof p->log_path, "%s/recoveryd.log", p->dir);
    p->exit_code = -1;
    if (mkdir(p->data_dir, 0700) != 0) {
        fprintf(stderr, "rdt: mkdir %s: %s\n", p->data_dir, strerror(errno));
        return -1;
    }
    if (pick_ports(&p->port, &p->raft_port) != 0) {
        return -1;
    }
    snprintf(p->base_url, sizeof p->base_url, "http://%s:%u", proc_host(p), (unsigned)p->port);
    return 0;
}

static int write_config(const struct rdt_proc *p)
{
    FILE *f = fopen(p->config_path, "w");
    if (!f) {
        fprintf(stderr, "rdt: fopen %s: %s\n", p->config_path, strerror(errno));
        return -1;
    }
    size_t extra_len = strlen(p->extra_yaml);
    /* A daemon on another address (a network namespace) refuses to serve
     * an open API unless told to (docs/security.md): tests that do not
     * configure security say so. */
    bool loopback = strncmp(proc_host(p), "127.", 4) == 0;
    bool has_security =
        strncmp(p->extra_yaml, "security:", 9) == 0 || strstr(p->extra_yaml, "\nsecurity:") != NULL;
    fprintf(f,
            "# Written by the integration test harness (tests/lib/harness.c).\n"
            "cluster:\n"
            "  raft_address: %s:%u\n"
            "%s%s"
            "logging:\n"
            "%s%s%s%s%s",
            proc_host(p), (unsigned)p->raft_port,
            /* A replica in a namespace (or on 0.0.0.0) has a non-loopback
             * raft address: plain TCP there needs the explicit setting
             * (docs/security.md). */
            (p->netns[0] || !loopback) && !strstr(p->cluster_yaml, "  tls:")
                ? "  tls: {insecure_plaintext: true}\n"
                : "",
            p->cluster_yaml, strstr(p->logging_yaml, "level:") ? "" : "  level: debug\n",
            p->logging_yaml, p->extra_yaml,
            extra_len && p->extra_yaml[extra_len - 1] != '\n' ? "\n" : "",
            !loopback && !has_security ? "security:\n  allow_unauthenticated: true\n" : "");
    if (ferror(f) | fclose(f)) {
        fprintf(stderr, "rdt: writing %s failed\n", p->config_path);
        return -1;
    }
    return 0;
}

const char *rdt_tls_ca;
const char *rdt_bearer;
const char *rdt_client_cert;
const char *rdt_client_key;

const char *rdt_plugins_dir(void)
{
    /* RD_BINARY is <build>/bin/recoveryd; plugins are built into <build>/plugins. */
    static char dir[512];
    if (dir[0] == '\0') {
        snprintf(dir, sizeof dir, "%s", RD_BINARY);
        for (int i = 0; i < 2; i++) {
            char *slash = strrchr(dir, '/');
            if (slash != NULL)
                *slash = '\0';
        }
        strncat(dir, "/plugins", sizeof dir - strlen(dir) - 1);
    }
    return dir;
}

int rdt_proc_prepare(struct rdt_proc *p)
{
    rdt_init();
    return p->dir[0] == '\0' ? proc_init(p) : 0;
}

#define PORT_IN_USE "is already in use by another process"

/* True when `p`'s last spawn exited because its API or raft port was taken
 * between the pick and its bind (another test's daemon, started in
 * parallel, drew the same port: CI's sanitizer run of 2026-12-04). Worth a
 * start on new ports, not a failure: counted in `ports_lost`, so that its
 * error line does not fail rdt_proc_cleanup()'s check. */
static bool lost_a_port(struct rdt_proc *p)
{
    if (p->pid > 0 && rdt_proc_alive(p))
        return false;
    char *log = rdt_proc_log(p);
    size_t len = log ? strlen(log) : 0;
    size_t from = p->log_mark_ > 0 && (size_t)p->log_mark_ <= len ? (size_t)p->log_mark_ : 0;
    bool lost = log != NULL && strstr(log + from, PORT_IN_USE) != NULL;
    free(log);
    if (!lost)
        return false;
    fprintf(stderr, "rdt: port %u or %u was taken before the daemon bound it: new ports\n",
            (unsigned)p->port, (unsigned)p->raft_port);
    p->ports_lost++;
    return true;
}

/* After a failed start of `p`: when this start drew its ports and the
 * daemon lost one of them (3 times at most), new ports, an empty DIR/data
 * (the lost daemon's lock file) and the config rewritten. True when `p` may
 * then be launched again. */
static bool move_ports(struct rdt_proc *p)
{
    if (!p->fresh_ports || p->ports_lost >= 3 || !lost_a_port(p))
        return false;
    if (rdt_free_ports(&p->port, &p->raft_port) != 0 || rdt_rmtree(p->data_dir) != 0)
        return false;
    if (mkdir(p->data_dir, 0700) != 0) {
        fprintf(stderr, "rdt: mkdir %s: %s\n", p->data_dir, strerror(errno));
        return false;
    }
    snprintf(p->base_url, sizeof p->base_url, "http://%s:%u", proc_host(p), (unsigned)p->port);
    return write_config(p) == 0;
}

/* launch(), again on new ports while move_ports() allows it. */
static int launch_moving(struct rdt_proc *p)
{
    while (launch(p) != 0)
        if (!move_ports(p))
            return -1;
    return 0;
}

int rdt_proc_start(struct rdt_proc *p, const char *extra_yaml)
{
    rdt_init();
    if (p->pid > 0) {
        fprintf(stderr, "rdt: start: the daemon is already running (pid %d)\n", (int)p->pid);
        return -1;
    }
    if (extra_yaml && strlen(extra_yaml) >= sizeof p->extra_yaml) {
        fprintf(stderr, "rdt: start: extra_yaml is longer than %zu bytes\n",
                sizeof p->extra_yaml - 1);
        return -1;
    }
    p->fresh_ports = p->dir[0] == '\0';
    if (p->fresh_ports && proc_init(p) != 0) {
        return -1;
    }
    snprintf(p->extra_yaml, sizeof p->extra_yaml, "%s", extra_yaml ? extra_yaml : "");
    if (write_config(p) != 0) {
        return -1;
    }
    return launch_moving(p);
}

int rdt_proc_restart(struct rdt_proc *p)
{
    rdt_init();
    if (p->dir[0] == '\0') {
        fprintf(stderr, "rdt: restart: the daemon was never started\n");
        return -1;
    }
    if (p->pid > 0) {
        fprintf(stderr, "rdt: restart: the daemon is still running (pid %d)\n", (int)p->pid);
        return -1;
    }
    p->fresh_ports = false; /* a restarted daemon keeps its address */
    return launch(p);
}

/* A sanitizer's report, or (unless the test provokes them) an error logged
 * by the daemon: the first such line of `log`, or NULL. */
static char *bad_line(const struct rdt_proc *p, const char *log)
{
    for (const char *line = log; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (is_error_line(line, len) &&
            !(p->ports_lost > 0 && memmem(line, len, PORT_IN_USE, strlen(PORT_IN_USE))) &&
            !(p->errors_expected &&
              ((strncmp(line, "ts=", 3) == 0 && memmem(line, len, " level=error", 12) != NULL) ||
               (strncmp(line, "{\"ts\":", 6) == 0 &&
                memmem(line, len, ",\"level\":\"error\",", 17) != NULL))))
            return strndup(line, len);
        line = nl ? nl + 1 : NULL;
    }
    return NULL;
}

void rdt_proc_cleanup(struct rdt_proc *p)
{
    /* A daemon still running is stopped the way an operator stops it, so
     * that its shutdown runs and LeakSanitizer gets to check it. */
    char why[512] = "";
    if (p->pid > 0) {
        int code = -1;
        if (rdt_proc_stop(p, &code) != 0)
            snprintf(why, sizeof why, "recoveryd exited with %d at SIGTERM (or did not exit)",
                     code);
    }
    if (p->dir[0] == '\0') {
        return;
    }
    if (why[0] == '\0') {
        char *log = rdt_proc_log(p);
        char *bad = log ? bad_line(p, log) : NULL;
        if (bad != NULL) {
            snprintf(why, sizeof why, "the daemon's log has an error line: %.400s", bad);
            rdt_proc_print_log_tail(p, RDT_LOG_TAIL_LINES);
        }
        free(bad);
        free(log);
    }
    const char *keep = getenv("RDT_KEEP");
    if (why[0] != '\0' || (keep && *keep && strcmp(keep, "0") != 0)) {
        fprintf(stderr, "rdt: kept %s\n", p->dir);
    } else {
        rdt_rmtree(p->dir);
    }
    p->dir[0] = '\0';
    if (why[0] != '\0')
        fail_msg("rdt: %s", why);
}

int rdt_setup_ready(void **state, const char *yaml, int timeout_ms)
{
    struct rdt_proc *p = calloc(1, sizeof *p);
    *state = p;
    if (p == NULL)
        return -1;
    if (rdt_proc_start(p, yaml) == 0 && rdt_wait_ready(p, timeout_ms) == 0)
        return 0;
    rdt_proc_cleanup(p);
    free(p);
    *state = NULL;
    return -1;
}

int rdt_wait_ready(struct rdt_proc *p, int timeout_ms)
{
    int64_t deadline = rdt_now_ms() + timeout_ms;
    int delay = 5;
    for (;;) {
        struct rdt_resp r = {0};
        int rc = rdt_get(p, RDT_H1, "/ready", &r);
        long status = r.status;
        rdt_resp_free(&r);
        if (rc == 0 && status == 200) {
            p->fresh_ports = false; /* it holds them now */
            return 0;
        }
        if (!rdt_proc_alive(p)) {
            fprintf(stderr, "rdt: recoveryd exited with %d while waiting for /ready\n",
                    p->exit_code);
            rdt_proc_print_log_tail(p, RDT_LOG_TAIL_LINES);
            if (!move_ports(p) || launch_moving(p) != 0)
                return -1;
            deadline = rdt_now_ms() + timeout_ms;
            continue;
        }
        if (rdt_now_ms() >= deadline) {
            fprintf(stderr, "rdt: /ready did not answer 200 within %d ms (last status %ld)\n",
                    timeout_ms, status);
            rdt_proc_print_log_tail(p, RDT_LOG_TAIL_LINES);
            return -1;
        }
        rdt_sleep_ms(delay);
        delay = delay < 200 ? delay * 2 : 200;
    }
}

/* ---- one-shot commands ------------------------------------------------------------ */

/* Drains both pipes until EOF or the deadline. 0, or -1 on timeout/error. */
static int drain_pipes(int fds[2], struct rdt_buf bufs[2], int64_t deadline)
{
    int open_fds = 2;
    while (open_fds > 0) {
        int64_t left = deadline - rdt_now_ms();
        if (left <= 0) {
            return -1;
        }
        struct pollfd pfd[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
        int n = poll(pfd, 2, (int)left);
        if (n < 0 && errno != EINTR) {
            return -1;
        }
        for (int i = 0; i < 2 && n > 0; i++) {
            if (fds[i] < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            char chunk[4096];
            ssize_t got = read(fds[i], chunk, sizeof chunk);
            if (got > 0) {
                if (buf_append(&bufs[i], chunk, (size_t)got) != 0) {
                    return -1;
                }
            } else if (got == 0 || errno != EINTR) {
                close(fds[i]);
                fds[i] = -1;
                open_fds--;
            }
        }
    }
    return 0;
}

static void hand_over(struct rdt_buf *b, char **dst)
{
    if (!dst) {
        free(b->data);
        return;
    }
    if (!b->data) {
        b->data = calloc(1, 1);
    }
    *dst = b->data;
}

int rdt_run(char *const argv[], int timeout_ms, char **out, char **err)
{
    rdt_init();
    if (out) {
        *out = NULL;
    }
    if (err) {
        *err = NULL;
    }
    int po[2], pe[2];
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0 || pipe2(po, O_CLOEXEC) != 0) {
        fprintf(stderr, "rdt: run: %s\n", strerror(errno));
        if (null_fd >= 0) {
            close(null_fd);
        }
        return -1;
    }
    if (pipe2(pe, O_CLOEXEC) != 0) {
        fprintf(stderr, "rdt: run: %s\n", strerror(errno));
        close(null_fd);
        close(po[0]);
        close(po[1]);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        child_exec(argv, NULL, null_fd, po[1], pe[1], parent, -1, 0);
    }
    close(null_fd);
    close(po[1]);
    close(pe[1]);
    if (pid < 0) {
        fprintf(stderr, "rdt: fork: %s\n", strerror(errno));
        close(po[0]);
        close(pe[0]);
        return -1;
    }

    int64_t deadline = rdt_now_ms() + timeout_ms;
    int fds[2] = {po[0], pe[0]};
    struct rdt_buf bufs[2] = {{0}, {0}};
    int rc = drain_pipes(fds, bufs, deadline);
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    struct rdt_proc child = {.pid = pid, .exit_code = -1};
    int remaining = (int)(deadline - rdt_now_ms());
    int code = rc == 0 ? rdt_proc_wait(&child, remaining > 0 ? remaining : 0, NULL) : -1;
    if (code < 0) {
        fprintf(stderr, "rdt: %s did not finish within %d ms; killed\n", argv[0], timeout_ms);
        rdt_proc_kill9(&child);
    }
    hand_over(&bufs[0], out);
    hand_over(&bufs[1], err);
    return code;
}

/* ---- HTTP -------------------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct rdt_resp *r = userp;
    struct rdt_buf b = {r->body, r->body_len, r->body_cap_};
    size_t n = size * nmemb;
    int rc = buf_append(&b, data, n);
    r->body = b.data;
    r->body_len = b.len;
    r->body_cap_ = b.cap;
    return rc == 0 ? n : 0;
}

/* Copies the value of header `line` into `dst` when its name is `name`. */
static void take_header(const char *line, size_t len, const char *name, char *dst, size_t cap)
{
    size_t nlen = strlen(name);
    if (len <= nlen || line[nlen] != ':' || strncasecmp(line, name, nlen) != 0) {
        return;
    }
    const char *v = line + nlen + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (end > v && isspace((unsigned char)end[-1])) {
        end--;
    }
    size_t vlen = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userp)
{
    struct rdt_resp *r = userp;
    size_t len = size * nmemb;
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): forget the previous one's headers. */
        r->content_type[0] = r->retry_after[0] = r->allow[0] = '\0';
        r->location[0] = r->applied_index[0] = r->request_id[0] = '\0';
        return len;
    }
    take_header(line, len, "Content-Type", r->content_type, sizeof r->content_type);
    take_header(line, len, "Retry-After", r->retry_after, sizeof r->retry_after);
    take_header(line, len, "Location", r->location, sizeof r->location);
    take_header(line, len, "X-Recoveryd-Applied-Index", r->applied_index, sizeof r->applied_index);
    take_header(line, len, "X-Request-Id", r->request_id, sizeof r->request_id);
    take_header(line, len, "Allow", r->allow, sizeof r->allow);
    take_header(line, len, "WWW-Authenticate", r->www_authenticate, sizeof r->www_authenticate);
    take_header(line, len, "X-Request-Id", r->request_id, sizeof r->request_id);
    return len;
}

static void set_method(CURL *e, const char *method, bool has_body)
{
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0 && !has_body) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
}

CURL *rdt_easy_new(enum rdt_proto proto, const char *method, const char *url, const char *body,
                   size_t body_len, long timeout_ms, struct rdt_resp *out)
{
    rdt_init();
    /* Callers may pass an uninitialised response: it is overwritten, never read. */
    memset(out, 0, sizeof *out);
    CURL *e = curl_easy_init();
    if (!e) {
        return NULL;
    }
    /* "Expect:" off: the whole body is sent, as most clients do. */
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    if (h && body) {
        struct curl_slist *h2 = curl_slist_append(h, "Content-Type: application/json");
        if (!h2) {
            curl_slist_free_all(h);
        }
        h = h2;
    }
    if (h && rdt_bearer) {
        char auth[512];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", rdt_bearer);
        struct curl_slist *h2 = curl_slist_append(h, auth);
        if (!h2) {
            curl_slist_free_all(h);
        }
        h = h2;
    }
    if (!h) {
        curl_easy_cleanup(e);
        return NULL;
    }
    out->req_headers_ = h;
    curl_easy_setopt(e, CURLOPT_URL, url);
    bool https = strncmp(url, "https://", 8) == 0;
    /* Over TLS, HTTP/2 is negotiated by ALPN; in cleartext, prior knowledge. */
    long h2 = https ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, proto == RDT_H2 ? h2 : (long)CURL_HTTP_VERSION_1_1);
    if (https && rdt_tls_ca != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, rdt_tls_ca);
    if (https && rdt_client_cert != NULL) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, rdt_client_cert);
        curl_easy_setopt(e, CURLOPT_SSLKEY, rdt_client_key);
    }
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, out->curl_error);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    }
    set_method(e, method, body != NULL);
    return e;
}

int rdt_easy_finish(CURL *e, CURLcode rc, struct rdt_resp *out)
{
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &out->http_version);
    out->curl_code = (int)rc;
    if (rc != CURLE_OK && out->curl_error[0] == '\0') {
        snprintf(out->curl_error, sizeof out->curl_error, "%s", curl_easy_strerror(rc));
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(out->req_headers_);
    out->req_headers_ = NULL;
    if (out->body_len > 0 && !out->json) {
        out->json = json_loadb(out->body, out->body_len, JSON_DECODE_ANY, NULL);
    }
    return rc == CURLE_OK ? 0 : -1;
}

int rdt_http(enum rdt_proto proto, const char *method, const char *url, const char *body,
             size_t body_len, struct rdt_resp *out)
{
    CURL *e = rdt_easy_new(proto, method, url, body, body_len, RDT_HTTP_TIMEOUT_MS, out);
    if (!e) {
        snprintf(out->curl_error, sizeof out->curl_error, "could not set up the request");
        return -1;
    }
    int rc = rdt_easy_finish(e, curl_easy_perform(e), out);
    curl_easy_cleanup(e);
    return rc;
}

void rdt_resp_free(struct rdt_resp *r)
{
    free(r->body);
    json_decref(r->json);
    curl_slist_free_all(r->req_headers_);
    memset(r, 0, sizeof *r);
}

static int proc_request(struct rdt_proc *p, enum rdt_proto proto, const char *method,
                        const char *path, const char *body, struct rdt_resp *out)
{
    size_t n = strlen(p->base_url) + strlen(path) + 1;
    char *url = malloc(n);
    if (!url) {
        return -1;
    }
    snprintf(url, n, "%s%s", p->base_url, path);
    int rc = rdt_http(proto, method, url, body, body ? strlen(body) : 0, out);
    free(url);
    return rc;
}

int rdt_get(struct rdt_proc *p, enum rdt_proto proto, const char *path, struct rdt_resp *out)
{
    return proc_request(p, proto, "GET", path, NULL, out);
}

int rdt_post(struct rdt_proc *p, enum rdt_proto proto, const char *path, const char *json_text,
             struct rdt_resp *out)
{
    return proc_request(p, proto, "POST", path, json_text, out);
}

int rdt_delete(struct rdt_proc *p, enum rdt_proto proto, const char *path, struct rdt_resp *out)
{
    return proc_request(p, proto, "DELETE", path, NULL, out);
}

const char *rdt_err_code(const struct rdt_resp *r)
{
    json_t *code = rdt_json_path(r->json, "error.code");
    return json_is_string(code) ? json_string_value(code) : NULL;
}

/* ---- agent helpers ------------------------------------------------------------------- */

static void report(const char *what, const struct rdt_resp *r)
{
    fprintf(stderr, "rdt: %s: status %ld%s%s, body: %.500s\n", what, r->status,
            r->curl_code ? ", curl: " : "", r->curl_code ? r->curl_error : "",
            r->body ? r->body : "(none)");
}

int rdt_register(struct rdt_proc *p, const char *node_id, int slots, long long *epoch_out)
{
    json_t *req = json_pack("{s:s, s:{s:i}}", "node_id", node_id, "capacity", "slots", slots);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!text) {
        return -1;
    }
    struct rdt_resp r = {0};
    int rc = rdt_post(p, RDT_H1, "/api/v1/nodes", text, &r);
    free(text);
    json_t *epoch = rdt_json_path(r.json, "epoch");
    if (rc != 0 || r.status != 201 || !json_is_integer(epoch)) {
        char what[320];
        snprintf(what, sizeof what, "register %s", node_id);
        report(what, &r);
        rdt_resp_free(&r);
        return -1;
    }
    if (epoch_out) {
        *epoch_out = (long long)json_integer_value(epoch);
    }
    rdt_resp_free(&r);
    return 0;
}

int rdt_heartbeat(struct rdt_proc *p, enum rdt_proto proto, const char *node_id, long long epoch,
                  int slots_used, struct rdt_resp *out)
{
    json_t *req =
        json_pack("{s:I, s:{s:i}}", "epoch", (json_int_t)epoch, "load", "slots_used", slots_used);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    char path[320];
    int n = snprintf(path, sizeof path, "/api/v1/nodes/%s/heartbeat", node_id);
    int rc = -1;
    if (text && n > 0 && (size_t)n < sizeof path) {
        rc = rdt_post(p, proto, path, text, out);
    }
    free(text);
    return rc;
}

/* ---- small utilities --------------------------------------------------------------------- */

json_t *rdt_json_path(json_t *root, const char *dotted)
{
    json_t *cur = root;
    const char *s = dotted;
    while (cur && *s) {
        const char *dot = strchr(s, '.');
        size_t len = dot ? (size_t)(dot - s) : strlen(s);
        if (json_is_array(cur)) {
            char *end;
            unsigned long idx = strtoul(s, &end, 10);
            cur = end == s + len ? json_array_get(cur, idx) : NULL;
        } else {
            cur = json_object_getn(cur, s, len);
        }
        s += len + (dot ? 1 : 0);
    }
    return cur;
}

/* Reads `n` digits at `s` into `*v`. */
static bool digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return false;
        }
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

bool rdt_is_rfc3339_utc(const char *s)
{
    int y, mo, d, h, mi, sec;
    if (!s || strlen(s) < 20) {
        return false;
    }
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || s[10] != 'T' || !digits(s + 11, 2, &h) || s[13] != ':' ||
        !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec)) {
        return false;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) {
        return false;
    }
    const char *t = s + 19;
    if (*t == '.') {
        const char *f = ++t;
        while (isdigit((unsigned char)*t)) {
            t++;
        }
        if (t == f) {
            return false;
        }
    }
    return strcmp(t, "Z") == 0;
}

/* ---- clusters of daemons ------------------------------------------------------ */

/* rdt_cluster_start(), with replica i in net->ns[i] on net->addr[i] when `net`. */
/* True when replica `i` shares a port with one before it. */
static bool port_taken_by(const struct rdt_cluster *c, int i)
{
    const struct rdt_proc *p = &c->procs[i];
    for (int j = 0; j < i; j++) {
        const struct rdt_proc *q = &c->procs[j];
        if (p->port == q->port || p->port == q->raft_port || p->raft_port == q->port ||
            p->raft_port == q->raft_port)
            return true;
    }
    return false;
}

static int cluster_start_once(struct rdt_cluster *c, int n, const char *extra_yaml,
                              const char *cluster_extra, const struct rdt_net *net);

static int cluster_start(struct rdt_cluster *c, int n, const char *extra_yaml,
                         const char *cluster_extra, const struct rdt_net *net)
{
    for (int tries = 0;; tries++) {
        int rv = cluster_start_once(c, n, extra_yaml, cluster_extra, net);
        bool raced = false;
        for (int i = 0; rv != 0 && i < c->n; i++)
            raced |= lost_a_port(&c->procs[i]);
        if (rv == 0 || !raced || tries == 3)
            return rv;
        rdt_cluster_cleanup(c);
    }
}

static int cluster_start_once(struct rdt_cluster *c, int n, const char *extra_yaml,
                              const char *cluster_extra, const struct rdt_net *net)
{
    rdt_init();
    if (n < 1 || n > RDT_MAX_REPLICAS)
        return -1;
    const char *binary = c->binary;
    int (*prepare)(struct rdt_proc *, int) = c->prepare;
    memset(c, 0, sizeof(*c));
    c->n = n;
    c->binary = binary;
    c->prepare = prepare;
    for (int i = 0; i < n; i++) {
        if (binary)
            snprintf(c->procs[i].binary, sizeof c->procs[i].binary, "%s", binary);
        if (net) {
            snprintf(c->procs[i].host, sizeof c->procs[i].host, "%s", net->addr[i]);
            snprintf(c->procs[i].netns, sizeof c->procs[i].netns, "%s", net->ns[i]);
        }
        if (rdt_proc_prepare(&c->procs[i]) != 0)
            return -1;
        /* Each replica's two ports were free when picked, but an earlier
         * replica's may have been picked again (nothing holds them yet). */
        for (int tries = 0; tries < 20 && port_taken_by(c, i); tries++)
            if (rdt_free_ports(&c->procs[i].port, &c->procs[i].raft_port) != 0)
                return -1;
        if (port_taken_by(c, i))
            return -1;
        snprintf(c->procs[i].base_url, sizeof c->procs[i].base_url, "http://%s:%u",
                 proc_host(&c->procs[i]), (unsigned)c->procs[i].port);
    }
    for (int i = 0; i < n; i++) {
        struct rdt_proc *p = &c->procs[i];
        size_t off = (size_t)snprintf(p->cluster_yaml, sizeof p->cluster_yaml,
                                      "  replica_id: %d\n%s  peers:\n", i + 1,
                                      cluster_extra ? cluster_extra : "");
        for (int k = 0; k < n && off < sizeof p->cluster_yaml; k++) {
            char url[sizeof c->procs[k].base_url]; /* a copy: not inside the destination */
            memcpy(url, c->procs[k].base_url, sizeof url);
            off += (size_t)snprintf(p->cluster_yaml + off, sizeof p->cluster_yaml - off,
                                    "    - {id: %d, address: %s:%u, api_url: %s}\n", k + 1,
                                    proc_host(&c->procs[k]), (unsigned)c->procs[k].raft_port, url);
        }
        if (off >= sizeof p->cluster_yaml)
            return -1;
    }
    for (int i = 0; i < n; i++)
        if (prepare != NULL && prepare(&c->procs[i], i) != 0)
            return -1;
    for (int i = 0; i < n; i++)
        if (rdt_proc_start(&c->procs[i], extra_yaml) != 0)
            return -1;
    for (int i = 0; i < n; i++)
        if (rdt_wait_ready(&c->procs[i], 20000) != 0)
            return -1;
    return 0;
}

int rdt_cluster_start(struct rdt_cluster *c, int n, const char *extra_yaml,
                      const char *cluster_extra)
{
    return cluster_start(c, n, extra_yaml, cluster_extra, NULL);
}

int rdt_cluster_start_net(struct rdt_cluster *c, const struct rdt_net *net, const char *extra_yaml,
                          const char *cluster_extra)
{
    if (net->n < 1) {
        fprintf(stderr, "rdt: cluster start: the namespaces are not set up\n");
        return -1;
    }
    return cluster_start(c, net->n, extra_yaml, cluster_extra, net);
}

void rdt_cluster_cleanup(struct rdt_cluster *c)
{
    for (int i = 0; i < c->n; i++)
        rdt_proc_cleanup(&c->procs[i]);
    c->n = 0;
}

int rdt_cluster_leader(struct rdt_cluster *c, int timeout_ms)
{
    int64_t deadline = rdt_now_ms() + timeout_ms;
    for (;;) {
        for (int i = 0; i < c->n; i++) {
            struct rdt_proc *p = &c->procs[i];
            if (p->pid <= 0)
                continue;
            struct rdt_resp r = {0};
            if (rdt_get(p, RDT_H1, "/health", &r) == 0 && r.status == 200) {
                const char *role = json_string_value(json_object_get(r.json, "role"));
                if (role && strcmp(role, "leader") == 0) {
                    rdt_resp_free(&r);
                    return i;
                }
            }
            rdt_resp_free(&r);
        }
        if (rdt_now_ms() >= deadline)
            return -1;
        rdt_sleep_ms(20);
    }
}

int rdt_cluster_request(struct rdt_cluster *c, int *first, const char *method, const char *path,
                        const char *body, int timeout_ms, struct rdt_resp *out)
{
    int64_t deadline = rdt_now_ms() + timeout_ms;
    int i = *first >= 0 && *first < c->n ? *first : 0;
    for (;;) {
        struct rdt_proc *p = &c->procs[i];
        char url[512];
        snprintf(url, sizeof url, "%s%s", p->base_url, path);
        int rc = -1;
        for (int hop = 0; hop < 3; hop++) {
            rdt_resp_free(out);
            /* A stopped replica accepts connections (the kernel does) and
             * never answers: give each try a second, then move on. */
            CURL *e = rdt_easy_new(RDT_H1, method, url, body, body ? strlen(body) : 0, 1000, out);
            rc = e ? rdt_easy_finish(e, curl_easy_perform(e), out) : -1;
            if (e)
                curl_easy_cleanup(e);
            if (rc != 0 || out->status != 307 || out->location[0] == '\0')
                break;
            snprintf(url, sizeof url, "%s", out->location); /* to the leader */
        }
        if (rc == 0 && out->status != 503 && out->status != 307) {
            /* Remember who answered: the replica whose URL we ended on. */
            for (int k = 0; k < c->n; k++)
                if (strncmp(url, c->procs[k].base_url, strlen(c->procs[k].base_url)) == 0)
                    *first = k;
            return 0;
        }
        if (rdt_now_ms() >= deadline)
            return rc;
        i = (i + 1) % c->n;
        rdt_sleep_ms(20);
    }
}

int rdt_target_request(struct rdt_target *t, const char *method, const char *path, const char *body,
                       int timeout_ms, struct rdt_resp *out)
{
    if (t->c != NULL)
        return rdt_cluster_request(t->c, &t->first, method, path, body, timeout_ms, out);
    char url[512];
    snprintf(url, sizeof url, "%s%s", t->p->base_url, path);
    return rdt_http(RDT_H1, method, url, body, body ? strlen(body) : 0, out);
}

json_t *rdt_assignment_of(json_t *answer, const char *task_id)
{
    json_t *a;
    size_t i;
    json_array_foreach(json_object_get(answer, "assignments"), i, a)
    {
        const char *id = json_string_value(json_object_get(a, "task_id"));
        if (id != NULL && strcmp(id, task_id) == 0)
            return a;
    }
    return NULL;
}

json_t *rdt_await_assignment(struct rdt_target *t, const char *node_id, long long epoch,
                             const char *task_id, int timeout_ms, json_t **answer, char *why,
                             size_t why_len)
{
    char path[320], body[96], none[1];
    snprintf(path, sizeof path, "/api/v1/nodes/%s/heartbeat", node_id);
    snprintf(body, sizeof body, "{\"epoch\":%lld,\"load\":{\"slots_used\":0}}", epoch);
    if (why == NULL) {
        why = none;
        why_len = sizeof none;
    }
    int64_t deadline = rdt_now_ms() + timeout_ms;
    for (;;) {
        struct rdt_resp r = {0};
        int rc = rdt_target_request(t, "POST", path, body, timeout_ms, &r);
        json_t *found = rc == 0 && r.status == 200 ? rdt_assignment_of(r.json, task_id) : NULL;
        bool over = rdt_now_ms() > deadline;
        if (rc != 0)
            snprintf(why, why_len, "POST %s: %s", path, r.curl_error);
        else if (r.status != 200)
            snprintf(why, why_len, "POST %s: %ld %.200s", path, r.status, r.body ? r.body : "");
        else if (found == NULL && over)
            snprintf(why, why_len, "not handed task %s within %d ms", task_id, timeout_ms);
        if (found != NULL || rc != 0 || r.status != 200 || over) {
            if (answer != NULL)
                *answer = json_incref(r.json);
            json_incref(found);
            rdt_resp_free(&r);
            return found;
        }
        rdt_resp_free(&r);
        rdt_sleep_ms(20);
    }
}

/* ---- replicas in network namespaces ---------------------------------------------- */

#define RDT_NET_CMD_TIMEOUT_MS 10000
#define RDT_NET_MAX_ACTIVE     4

/* Absolute paths of iproute2's tools (rdt_run does not search PATH). */
static char net_ip[256], net_tc[256];

/* The nets set up and not yet torn down, for the signal handlers. */
static struct rdt_net *net_active[RDT_NET_MAX_ACTIVE];

static bool find_tool(const char *name, char *out, size_t len)
{
    const char *path = getenv("PATH");
    char dirs[2048];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/sbin:/usr/bin:/bin", path ? path : "");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        if (*d != '/') {
            continue;
        }
        snprintf(out, len, "%s/%s", d, name);
        if (access(out, X_OK) == 0) {
            return true;
        }
    }
    out[0] = '\0';
    return false;
}

/*
 * Runs `tool` with the NULL-terminated arguments that follow. Unless `quiet`,
 * a failure prints the command and its stderr. `err_out` (may be NULL) gets
 * its stderr (the caller frees it). Returns the exit code, -1 if it did not
 * run or finish.
 */
static int net_run(bool quiet, char **err_out, const char *tool, ...)
{
    const char *argv[40];
    int argc = 0;
    argv[argc++] = tool;
    va_list ap;
    va_start(ap, tool);
    const char *a;
    while (argc < 39 && (a = va_arg(ap, const char *)) != NULL) {
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;
    char *err = NULL;
    int rc = rdt_run((char *const *)argv, RDT_NET_CMD_TIMEOUT_MS, NULL, &err);
    if (rc != 0 && !quiet) {
        fprintf(stderr, "rdt: net: `");
        for (int i = 0; i < argc; i++) {
            fprintf(stderr, "%s%s", i ? " " : "", argv[i]);
        }
        size_t el = err ? strlen(err) : 0;
        fprintf(stderr, "` exited %d: %s%s", rc, el ? err : "(no message)",
                el && err[el - 1] == '\n' ? "" : "\n");
    }
    if (err_out) {
        *err_out = err;
    } else {
        free(err);
    }
    return rc;
}

/* Async-signal-safe: runs ip with `argv` (stdout and stderr discarded) and waits. */
static void net_run_in_handler(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(net_ip, argv);
        _exit(127);
    }
    if (pid > 0) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
    }
}

/*
 * SIGINT, SIGTERM, SIGHUP, SIGQUIT: remove the test's links and namespaces
 * (its daemons die with it: PDEATHSIG), then die of the signal.
 */
static void net_on_signal(int sig)
{
    for (int k = 0; k < RDT_NET_MAX_ACTIVE; k++) {
        struct rdt_net *net = net_active[k];
        if (net == NULL) {
            continue;
        }
        for (int i = 0; i < RDT_MAX_REPLICAS; i++) {
            if (net->made_veth[i]) {
                char *const argv[] = {"ip", "link", "del", net->veth[i], NULL};
                net_run_in_handler(argv);
            }
        }
        for (int i = 0; i < RDT_MAX_REPLICAS; i++) {
            if (net->made_ns[i]) {
                char *const argv[] = {"ip", "netns", "del", net->ns[i], NULL};
                net_run_in_handler(argv);
            }
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void net_register(struct rdt_net *net)
{
    static bool handlers;
    if (!handlers) {
        handlers = true;
        struct sigaction sa = {.sa_handler = net_on_signal};
        sigemptyset(&sa.sa_mask);
        const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
            sigaddset(&sa.sa_mask, sigs[i]);
        }
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
            sigaction(sigs[i], &sa, NULL);
        }
    }
    for (int k = 0; k < RDT_NET_MAX_ACTIVE; k++) {
        if (net_active[k] == net) {
            return;
        }
    }
    for (int k = 0; k < RDT_NET_MAX_ACTIVE; k++) {
        if (net_active[k] == NULL) {
            net_active[k] = net;
            return;
        }
    }
}

static void net_unregister(struct rdt_net *net)
{
    for (int k = 0; k < RDT_NET_MAX_ACTIVE; k++) {
        if (net_active[k] == net) {
            net_active[k] = NULL;
        }
    }
}

/* True when no process `pid` runs (none, or only a zombie not yet reaped). */
static bool pid_gone(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return false;
    }
    buf[n] = '\0';
    /* "pid (comm) S ...": the state follows the last ')'. */
    const char *rp = strrchr(buf, ')');
    return rp != NULL && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

/*
 * Namespaces named rdt<pid><a-e> whose test process <pid> is gone and that
 * hold no process: left behind by a test that was killed (SIGKILL leaves no
 * chance to clean up). Their links go with them.
 */
static void net_sweep_leftovers(void)
{
    DIR *d = opendir("/run/netns");
    if (d == NULL) {
        return;
    }
    char names[16][64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 16) {
        const char *s = e->d_name;
        if (strncmp(s, "rdt", 3) != 0) {
            continue;
        }
        const char *q = s + 3;
        long pid = 0;
        while (isdigit((unsigned char)*q) && pid < 100000000L) {
            pid = pid * 10 + (*q++ - '0');
        }
        if (q == s + 3 || *q < 'a' || *q > 'e' || q[1] != '\0' || pid <= 0 ||
            pid == (long)getpid()) {
            continue;
        }
        if (!pid_gone((pid_t)pid)) {
            continue; /* its test (or some process with that pid) still runs */
        }
        snprintf(names[n++], sizeof names[0], "%s", s);
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        char *out = NULL;
        char *const argv[] = {net_ip, "netns", "pids", names[i], NULL};
        int rc = rdt_run(argv, RDT_NET_CMD_TIMEOUT_MS, &out, NULL);
        bool empty = rc == 0 && out != NULL && strspn(out, " \t\n") == strlen(out);
        free(out);
        if (!empty) {
            continue;
        }
        fprintf(stderr, "rdt: net: removing namespace %s left behind by a test that is gone\n",
                names[i]);
        net_run(false, NULL, net_ip, "netns", "del", names[i], NULL);
    }
}

/* True when nothing on this machine uses addresses or routes in `prefix`. */
static bool net_block_free(const char *prefix)
{
    char *out = NULL;
    char *const a[] = {net_ip, "-4", "-o", "addr", "show", "to", (char *)prefix, NULL};
    int rc = rdt_run(a, RDT_NET_CMD_TIMEOUT_MS, &out, NULL);
    bool free_ = rc == 0 && out != NULL && out[0] == '\0';
    free(out);
    if (!free_) {
        return false;
    }
    char *const r[] = {net_ip, "-4", "route", "show", "root", (char *)prefix, NULL};
    rc = rdt_run(r, RDT_NET_CMD_TIMEOUT_MS, &out, NULL);
    free_ = rc == 0 && out != NULL && out[0] == '\0';
    free(out);
    return free_;
}

static void set_why(char *why, size_t len, const char *fmt, const char *detail)
{
    char d[256];
    snprintf(d, sizeof d, "%s", detail ? detail : "");
    size_t dl = strlen(d);
    while (dl > 0 && isspace((unsigned char)d[dl - 1])) {
        d[--dl] = '\0';
    }
    snprintf(why, len, fmt, d);
}

/*
 * True (and says so) when `ip` refused to create `name` because it exists:
 * a namespace or link this process's earlier test failed to remove, or one
 * left by a test whose pid this process now has. That is a failure to
 * report, not a machine without namespaces: it must not turn into a skip.
 */
static bool net_name_taken(const char *err, const char *name)
{
    if (err == NULL || strstr(err, "File exists") == NULL) {
        return false;
    }
    fprintf(stderr, "rdt: net: %s already exists (left behind by an earlier test?): %s", name, err);
    return true;
}

int rdt_net_setup(struct rdt_net *net, int n, char *why, size_t why_len)
{
    rdt_init();
    memset(net, 0, sizeof *net);
    why[0] = '\0';
    if (n < 2 || n > RDT_MAX_REPLICAS) {
        fprintf(stderr, "rdt: net: %d replicas: expected 2 to %d\n", n, RDT_MAX_REPLICAS);
        return -1;
    }
    if (geteuid() != 0) {
        char d[64];
        snprintf(d, sizeof d, "%u", (unsigned)geteuid());
        set_why(why, why_len,
                "not root (uid %s): network namespaces and veth links need CAP_SYS_ADMIN and "
                "CAP_NET_ADMIN",
                d);
        return 1;
    }
    if (!find_tool("ip", net_ip, sizeof net_ip) || !find_tool("tc", net_tc, sizeof net_tc)) {
        set_why(why, why_len, "%s", "no `ip` or `tc` command (iproute2 is not installed)");
        return 1;
    }
    net_sweep_leftovers();
    /* A /24 for this process: 10.77.Y.0/24, nothing on the machine in it. */
    int y = 0;
    for (int k = 0; k < 250 && y == 0; k++) {
        int cand = (int)(((unsigned)getpid() + (unsigned)k) % 250u) + 1;
        char prefix[32];
        snprintf(prefix, sizeof prefix, "10.77.%d.0/24", cand);
        if (net_block_free(prefix)) {
            y = cand;
        }
    }
    if (y == 0) {
        fprintf(stderr, "rdt: net: every 10.77.Y.0/24 is in use on this machine\n");
        return -1;
    }
    net->n = n;
    for (int i = 0; i < n; i++) {
        snprintf(net->ns[i], sizeof net->ns[i], "rdt%ld%c", (long)getpid(), 'a' + i);
        snprintf(net->veth[i], sizeof net->veth[i], "rdt%ldh%d", (long)getpid(), i + 1);
        snprintf(net->addr[i], sizeof net->addr[i], "10.77.%d.%d", y, i + 1);
        snprintf(net->root_addr[i], sizeof net->root_addr[i], "10.77.%d.%d", y, 101 + i);
    }
    net_register(net);
    char *err = NULL;
    /* Namespaces: a refusal here means the machine does not allow them. */
    for (int i = 0; i < n; i++) {
        if (net_run(true, &err, net_ip, "netns", "add", net->ns[i], NULL) != 0) {
            if (net_name_taken(err, net->ns[i])) {
                free(err);
                goto fail;
            }
            set_why(why, why_len, "`ip netns add` was refused: %s", err);
            free(err);
            rdt_net_teardown(net);
            return 1;
        }
        free(err);
        err = NULL;
        net->made_ns[i] = true;
        if (net_run(false, NULL, net_ip, "-n", net->ns[i], "link", "set", "lo", "up", NULL) != 0) {
            goto fail;
        }
    }
    /* Access links: the test's way in, point to point. */
    for (int i = 0; i < n; i++) {
        if (net_run(true, &err, net_ip, "link", "add", net->veth[i], "type", "veth", "peer", "name",
                    "e0", "netns", net->ns[i], NULL) != 0) {
            if (net_name_taken(err, net->veth[i])) {
                free(err);
                goto fail;
            }
            set_why(why, why_len, "veth links were refused: %s", err);
            free(err);
            rdt_net_teardown(net);
            return 1;
        }
        free(err);
        err = NULL;
        net->made_veth[i] = true;
        char local[40], peer[40];
        snprintf(local, sizeof local, "%s", net->root_addr[i]);
        snprintf(peer, sizeof peer, "%s/32", net->addr[i]);
        if (net_run(false, NULL, net_ip, "addr", "add", local, "peer", peer, "dev", net->veth[i],
                    NULL) != 0 ||
            net_run(false, NULL, net_ip, "link", "set", net->veth[i], "up", NULL) != 0) {
            goto fail;
        }
        snprintf(local, sizeof local, "%s", net->addr[i]);
        snprintf(peer, sizeof peer, "%s/32", net->root_addr[i]);
        if (net_run(false, NULL, net_ip, "-n", net->ns[i], "addr", "add", local, "peer", peer,
                    "dev", "e0", NULL) != 0 ||
            net_run(false, NULL, net_ip, "-n", net->ns[i], "link", "set", "e0", "up", NULL) != 0) {
            goto fail;
        }
    }
    /* Replica links: one veth pair between every two namespaces. */
    for (int i = 0; i < n; i++) {
        for (int j = i + 1; j < n; j++) {
            char mi[8], mj[8];
            snprintf(mi, sizeof mi, "m%d", i + 1);
            snprintf(mj, sizeof mj, "m%d", j + 1);
            if (net_run(false, NULL, net_ip, "-n", net->ns[i], "link", "add", mj, "type", "veth",
                        "peer", "name", mi, "netns", net->ns[j], NULL) != 0) {
                goto fail;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            if (i == j) {
                continue;
            }
            char mj[8], dst[40];
            snprintf(mj, sizeof mj, "m%d", j + 1);
            snprintf(dst, sizeof dst, "%s/32", net->addr[j]);
            if (net_run(false, NULL, net_ip, "-n", net->ns[i], "link", "set", mj, "up", NULL) !=
                    0 ||
                net_run(false, NULL, net_ip, "-n", net->ns[i], "route", "replace", dst, "dev", mj,
                        "src", net->addr[i], NULL) != 0) {
                goto fail;
            }
        }
    }
    /* The drop cut needs tc's qdiscs in the namespaces. */
    if (net_run(true, &err, net_tc, "-n", net->ns[0], "qdisc", "show", "dev", "m2", NULL) != 0) {
        set_why(why, why_len, "`tc` cannot manage qdiscs in a network namespace: %s", err);
        free(err);
        rdt_net_teardown(net);
        return 1;
    }
    free(err);
    fprintf(stderr, "rdt: net: %d namespaces %s..%s, replicas on %s..%s, test's ends %s..%s\n", n,
            net->ns[0], net->ns[n - 1], net->addr[0], net->addr[n - 1], net->root_addr[0],
            net->root_addr[n - 1]);
    return 0;
fail:
    rdt_net_teardown(net);
    return -1;
}

/* Puts replica a's end of its link to b into state `how` (from net->cut[a][b]). */
static int net_end(struct rdt_net *net, int a, int b, enum rdt_cut how)
{
    char dev[8];
    snprintf(dev, sizeof dev, "m%d", b + 1);
    enum rdt_cut now = net->cut[a][b];
    int rc = 0;
    if (now == RDT_CUT_DROP && how != RDT_CUT_DROP) {
        rc |= net_run(false, NULL, net_tc, "-n", net->ns[a], "qdisc", "del", "dev", dev, "root",
                      NULL);
    }
    if (now == RDT_CUT_DOWN && how != RDT_CUT_DOWN) {
        rc |= net_run(false, NULL, net_ip, "-n", net->ns[a], "link", "set", dev, "up", NULL);
    }
    if (how == RDT_CUT_DROP && now != RDT_CUT_DROP) {
        /* A queue of length 0: every packet leaving on the link is dropped. */
        rc |= net_run(false, NULL, net_tc, "-n", net->ns[a], "qdisc", "replace", "dev", dev, "root",
                      "pfifo", "limit", "0", NULL);
    }
    if (how == RDT_CUT_DOWN && now != RDT_CUT_DOWN) {
        rc |= net_run(false, NULL, net_ip, "-n", net->ns[a], "link", "set", dev, "down", NULL);
    }
    return rc == 0 ? 0 : -1;
}

int rdt_net_cut(struct rdt_net *net, int a, int b, enum rdt_cut how)
{
    if (a < 0 || b < 0 || a >= net->n || b >= net->n || a == b) {
        fprintf(stderr, "rdt: net: no link between replicas %d and %d\n", a, b);
        return -1;
    }
    enum rdt_cut now = net->cut[a][b];
    if (now == how) {
        return 0;
    }
    int rc = net_end(net, a, b, how) | net_end(net, b, a, how);
    net->cut[a][b] = net->cut[b][a] = how;
    if (now == RDT_CUT_DOWN) {
        /* A link that went down lost its routes: both ends are up again now. */
        for (int k = 0; k < 2; k++) {
            int x = k ? b : a, z = k ? a : b;
            char dev[8], dst[40];
            snprintf(dev, sizeof dev, "m%d", z + 1);
            snprintf(dst, sizeof dst, "%s/32", net->addr[z]);
            rc |= net_run(false, NULL, net_ip, "-n", net->ns[x], "route", "replace", dst, "dev",
                          dev, "src", net->addr[x], NULL);
        }
    }
    return rc == 0 ? 0 : -1;
}

int rdt_net_isolate(struct rdt_net *net, int a, enum rdt_cut how)
{
    int rc = 0;
    for (int b = 0; b < net->n; b++) {
        if (b != a && rdt_net_cut(net, a, b, how) != 0) {
            rc = -1;
        }
    }
    return rc;
}

int rdt_net_heal_all(struct rdt_net *net)
{
    int rc = 0;
    for (int a = 0; a < net->n; a++) {
        for (int b = a + 1; b < net->n; b++) {
            if (rdt_net_cut(net, a, b, RDT_CUT_NONE) != 0) {
                rc = -1;
            }
        }
    }
    return rc;
}

void rdt_net_teardown(struct rdt_net *net)
{
    net_unregister(net);
    for (int i = 0; i < RDT_MAX_REPLICAS; i++) {
        if (net->made_veth[i]) {
            /* Deleting one end deletes the pair. */
            net_run(false, NULL, net_ip, "link", "del", net->veth[i], NULL);
            net->made_veth[i] = false;
        }
    }
    for (int i = 0; i < RDT_MAX_REPLICAS; i++) {
        if (net->made_ns[i]) {
            net_run(false, NULL, net_ip, "netns", "del", net->ns[i], NULL);
            net->made_ns[i] = false;
        }
    }
    memset(net->cut, 0, sizeof net->cut);
    net->n = 0;
}
