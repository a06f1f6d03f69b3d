/*
 * Integration test harness: see harness.h for the contract. Diagnostics go to
 * stderr prefixed "rdt:" so they stand out in ctest's output.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
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
                       pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent || (cwd && chdir(cwd) != 0)) {
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

static int spawn_daemon(struct rdt_proc *p)
{
    char listen_arg[32];
    snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%u", (unsigned)p->port);
    char *argv[] = {(char *)RD_BINARY,
                    (char *)"--config",
                    p->config_path,
                    (char *)"--listen",
                    listen_arg,
                    (char *)"--data-dir",
                    p->data_dir,
                    (char *)"--plugins-dir",
                    p->plugins_dir[0] ? p->plugins_dir : (char *)rdt_plugins_dir(),
                    (char *)"--policies-dir",
                    p->policies_dir[0] ? p->policies_dir : (char *)RD_SOURCE_DIR "/policies",
                    NULL};

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
        return -1;
    }
    dprintf(log_fd, "rdt: ---- starting %s --listen %s ----\n", RD_BINARY, listen_arg);

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* In its own directory, so relative paths never land in the build tree. */
        child_exec(argv, p->dir, null_fd, log_fd, log_fd, parent);
    }
    int saved = errno;
    close(log_fd);
    close(null_fd);
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
    return code;
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
        if (rc == 0 && status == 200) {
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
    if (rdt_free_ports(&p->port, &p->raft_port) != 0) {
        return -1;
    }
    snprintf(p->base_url, sizeof p->base_url, "http://127.0.0.1:%u", (unsigned)p->port);
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
    fprintf(f,
            "# Written by the integration test harness (tests/lib/harness.c).\n"
            "cluster:\n"
            "  raft_address: 127.0.0.1:%u\n"
            "%s"
            "logging:\n"
            "  level: debug\n"
            "%s%s",
            (unsigned)p->raft_port, p->cluster_yaml, p->extra_yaml,
            extra_len && p->extra_yaml[extra_len - 1] != '\n' ? "\n" : "");
    if (ferror(f) | fclose(f)) {
        fprintf(stderr, "rdt: writing %s failed\n", p->config_path);
        return -1;
    }
    return 0;
}

const char *rdt_tls_ca;

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
    if (p->dir[0] == '\0' && proc_init(p) != 0) {
        return -1;
    }
    snprintf(p->extra_yaml, sizeof p->extra_yaml, "%s", extra_yaml ? extra_yaml : "");
    if (write_config(p) != 0) {
        return -1;
    }
    return launch(p);
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
    return launch(p);
}

void rdt_proc_cleanup(struct rdt_proc *p)
{
    if (p->pid > 0) {
        rdt_proc_kill9(p);
    }
    if (p->dir[0] == '\0') {
        return;
    }
    const char *keep = getenv("RDT_KEEP");
    if (keep && *keep && strcmp(keep, "0") != 0) {
        fprintf(stderr, "rdt: kept %s\n", p->dir);
    } else {
        rdt_rmtree(p->dir);
    }
    p->dir[0] = '\0';
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
            return 0;
        }
        if (!rdt_proc_alive(p)) {
            fprintf(stderr, "rdt: recoveryd exited with %d while waiting for /ready\n",
                    p->exit_code);
            rdt_proc_print_log_tail(p, RDT_LOG_TAIL_LINES);
            return -1;
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
        child_exec(argv, NULL, null_fd, po[1], pe[1], parent);
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
        r->location[0] = r->applied_index[0] = '\0';
        return len;
    }
    take_header(line, len, "Content-Type", r->content_type, sizeof r->content_type);
    take_header(line, len, "Retry-After", r->retry_after, sizeof r->retry_after);
    take_header(line, len, "Location", r->location, sizeof r->location);
    take_header(line, len, "X-Recoveryd-Applied-Index", r->applied_index, sizeof r->applied_index);
    take_header(line, len, "Allow", r->allow, sizeof r->allow);
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

int rdt_cluster_start(struct rdt_cluster *c, int n, const char *extra_yaml,
                      const char *cluster_extra)
{
    rdt_init();
    if (n < 1 || n > RDT_MAX_REPLICAS)
        return -1;
    memset(c, 0, sizeof(*c));
    c->n = n;
    for (int i = 0; i < n; i++)
        if (rdt_proc_prepare(&c->procs[i]) != 0)
            return -1;
    for (int i = 0; i < n; i++) {
        struct rdt_proc *p = &c->procs[i];
        size_t off = (size_t)snprintf(p->cluster_yaml, sizeof p->cluster_yaml,
                                      "  replica_id: %d\n%s  peers:\n", i + 1,
                                      cluster_extra ? cluster_extra : "");
        for (int k = 0; k < n && off < sizeof p->cluster_yaml; k++) {
            char url[sizeof c->procs[k].base_url]; /* a copy: not inside the destination */
            memcpy(url, c->procs[k].base_url, sizeof url);
            off += (size_t)snprintf(p->cluster_yaml + off, sizeof p->cluster_yaml - off,
                                    "    - {id: %d, address: 127.0.0.1:%u, api_url: %s}\n", k + 1,
                                    (unsigned)c->procs[k].raft_port, url);
        }
        if (off >= sizeof p->cluster_yaml)
            return -1;
    }
    for (int i = 0; i < n; i++)
        if (rdt_proc_start(&c->procs[i], extra_yaml) != 0)
            return -1;
    for (int i = 0; i < n; i++)
        if (rdt_wait_ready(&c->procs[i], 20000) != 0)
            return -1;
    return 0;
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
