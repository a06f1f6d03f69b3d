/* Servers a test runs besides recoveryd (rdt_server.h). */
#include "rdt_server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static void child(char *const argv[], char *const env[], const char *cwd, int log_fd, pid_t parent,
                  uid_t uid, gid_t gid)
{
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
        _exit(127);
    if (uid != RDT_SAME_USER && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) {
        fprintf(stderr, "rdt_server: cannot become uid %d gid %d: %s\n", (int)uid, (int)gid,
                strerror(errno));
        _exit(127);
    }
    /* After the change of user, which clears it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    if (cwd && chdir(cwd) != 0) {
        fprintf(stderr, "rdt_server: chdir %s: %s\n", cwd, strerror(errno));
        _exit(127);
    }
    for (size_t i = 0; env && env[i]; i++)
        putenv(env[i]);
    close_range(3, ~0U, 0);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < 32; sig++)
        sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], argv);
    fprintf(stderr, "rdt_server: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int rdt_server_start(struct rdt_server *s, char *const argv[], char *const env[], const char *cwd,
                     const char *log_path, uid_t uid, gid_t gid)
{
    s->pid = 0;
    s->exit_code = -1;
    snprintf(s->log_path, sizeof s->log_path, "%s", log_path);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        fprintf(stderr, "rdt_server: open %s: %s\n", log_path, strerror(errno));
        return -1;
    }
    if (uid != RDT_SAME_USER && fchown(log_fd, uid, gid) != 0) {
        fprintf(stderr, "rdt_server: chown %s: %s\n", log_path, strerror(errno));
        close(log_fd);
        return -1;
    }
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child(argv, env, cwd, log_fd, parent, uid, gid);
    int saved = errno;
    close(log_fd);
    if (pid < 0) {
        fprintf(stderr, "rdt_server: fork: %s\n", strerror(saved));
        return -1;
    }
    s->pid = pid;
    return 0;
}

static int decode(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

bool rdt_server_alive(struct rdt_server *s)
{
    if (s->pid <= 0)
        return false;
    int st;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == 0)
        return true;
    if (r == s->pid)
        s->exit_code = decode(st);
    s->pid = 0;
    return false;
}

/* Waits for the exit up to `timeout_ms`: 0 once reaped, -1 at the deadline. */
static int wait_exit(struct rdt_server *s, int timeout_ms)
{
    int64_t deadline = rdt_now_ms() + timeout_ms;
    int delay = 1;
    while (rdt_server_alive(s)) {
        if (rdt_now_ms() >= deadline)
            return -1;
        rdt_sleep_ms(delay); /* between polls of waitpid */
        delay = delay < 50 ? delay * 2 : 50;
    }
    return 0;
}

int rdt_server_stop(struct rdt_server *s, int sig, int timeout_ms)
{
    if (!rdt_server_alive(s))
        return -1;
    kill(s->pid, sig);
    if (wait_exit(s, timeout_ms) == 0)
        return s->exit_code;
    fprintf(stderr, "rdt_server: pid %d did not exit within %d ms of signal %d: killed\n",
            (int)s->pid, timeout_ms, sig);
    kill(s->pid, SIGKILL);
    wait_exit(s, 10000);
    return -1;
}

int rdt_server_run(char *const argv[], char *const env[], const char *log_path, uid_t uid,
                   gid_t gid, int timeout_ms)
{
    struct rdt_server s;
    if (rdt_server_start(&s, argv, env, NULL, log_path, uid, gid) != 0)
        return -1;
    if (wait_exit(&s, timeout_ms) != 0) {
        fprintf(stderr, "rdt_server: %s did not finish within %d ms: killed\n", argv[0],
                timeout_ms);
        kill(s.pid, SIGKILL);
        wait_exit(&s, 10000);
        return -1;
    }
    return s.exit_code;
}

void rdt_server_print_log(const char *log_path, int lines)
{
    FILE *f = fopen(log_path, "r");
    if (!f) {
        fprintf(stderr, "rdt_server: no log %s: %s\n", log_path, strerror(errno));
        return;
    }
    char *all = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&all, &len);
    char buf[4096];
    size_t n;
    while (mem && (n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, mem);
    fclose(f);
    if (!mem)
        return;
    fclose(mem);
    const char *start = all + len;
    for (int seen = 0; start > all; start--)
        if (start[-1] == '\n' && start != all + len && ++seen > lines)
            break;
    fprintf(stderr, "---- last %d lines of %s ----\n%s---- end ----\n", lines, log_path, start);
    free(all);
}

int rdt_which(const char *name, char *out, size_t len)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/usr/bin:/sbin:/bin", path ? path : "");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        if (*d != '/')
            continue;
        snprintf(out, len, "%s/%s", d, name);
        if (access(out, X_OK) == 0)
            return 0;
    }
    out[0] = '\0';
    return -1;
}
