#include "services/supervisor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"

#define RESTART_MIN_S  1
#define RESTART_MAX_S  30
#define STABLE_AFTER_S 10 /* a child up this long restarts after RESTART_MIN_S again */
#define START_WAIT_S   30 /* for a child to accept connections */

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) { stop_signal = sig; }

static void sleep_s(double s)
{
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&t, NULL); /* a stop signal cuts it short */
}

/* Where to reach a child: the wildcard listens on loopback too. */
static int child_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    if (!host || !*host || strcmp(host, "0.0.0.0") == 0) host = "127.0.0.1";
    if (strcmp(host, "::") == 0) host = "::1";
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &ai) != 0) return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* A port that is free now, on the children's interface. */
static int free_port(const char *host)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (child_addr(host, 0, &ss, &len) != 0) return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&ss, len) == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    close(fd);
    return port;
}

static int accepts(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (child_addr(host, port, &ss, &len) != 0) return 0;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    int ok = connect(fd, (struct sockaddr *)&ss, len) == 0;
    close(fd);
    return ok;
}

typedef struct child {
    pid_t pid;
    double started;
    double delay;      /* before the next restart */
    double restart_at; /* 0: none due */
} child;

/* 0 in the child, the pid in the supervisor, -1 on failure. */
static pid_t start(child *c, const char *name, pid_t self)
{
    pid_t pid = fork();
    if (pid != 0) {
        if (pid > 0) c->pid = pid, c->started = at_now_s();
        return pid < 0 ? -1 : pid;
    }
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    /* A supervisor killed with SIGKILL must not leave its children. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != self) _exit(1);
    prctl(PR_SET_NAME, name); /* what ps and top show */
    return 0;
}

static void log_exit(at_log *log, const char *name, int status, const char *what)
{
    char how[64];
    if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(how, sizeof how, "status %d", WEXITSTATUS(status));
    at_log_write(log, AT_LOG_ERROR, what, "service", name, "exit", how, NULL);
}

int at_supervise(at_supervisor_cfg *cfg, int *which)
{
    child ch[AT_SUPERVISOR_MAX];
    memset(ch, 0, sizeof ch);
    pid_t self = getpid();
    for (int i = 0; i < cfg->n; i++)
        if (!cfg->ports[i] && (cfg->ports[i] = free_port(cfg->host)) <= 0) {
            at_log_write(cfg->log, AT_LOG_ERROR, "no free port", "service", cfg->names[i], NULL);
            return 1;
        }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop; /* no SA_RESTART: waits end at once */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int status = 0;
    for (int i = 0; i < cfg->n && !stop_signal; i++) {
        pid_t pid = start(&ch[i], cfg->names[i], self);
        if (pid == 0) {
            *which = i;
            return -1;
        }
        if (pid < 0) {
            at_log_write(cfg->log, AT_LOG_ERROR, "cannot start a service", "service", cfg->names[i], "error",
                         strerror(errno), NULL);
            status = 1;
            break;
        }
        ch[i].delay = RESTART_MIN_S;
        /* One at a time, so that the logs come in a fixed order. */
        double until = at_now_s() + START_WAIT_S;
        int st;
        while (!stop_signal && !accepts(cfg->host, cfg->ports[i])) {
            if (waitpid(ch[i].pid, &st, WNOHANG) == ch[i].pid) {
                log_exit(cfg->log, cfg->names[i], st, "service failed to start");
                ch[i].pid = 0;
                status = 1;
                break;
            }
            if (at_now_s() > until) {
                at_log_write(cfg->log, AT_LOG_ERROR, "service did not start listening", "service",
                             cfg->names[i], NULL);
                status = 1;
                break;
            }
            sleep_s(0.02);
        }
        if (status) break;
    }
    if (status) stop_signal = SIGTERM;

    double kill_at = 0;
    for (;;) {
        int live = 0, pending = 0;
        for (int i = 0; i < cfg->n; i++) {
            if (stop_signal) ch[i].restart_at = 0;
            live += ch[i].pid != 0;
            pending += !ch[i].pid && ch[i].restart_at > 0;
        }
        if (!live && !pending) break;
        if (stop_signal && !kill_at) {
            for (int i = 0; i < cfg->n; i++)
                if (ch[i].pid) kill(ch[i].pid, SIGTERM);
            /* The children exit by themselves after their drain (plus a
             * few seconds for stuck work); this is the backstop. */
            kill_at = at_now_s() + cfg->drain_timeout_s + 15;
        }
        if (kill_at && at_now_s() > kill_at) {
            for (int i = 0; i < cfg->n; i++)
                if (ch[i].pid) kill(ch[i].pid, SIGKILL);
            kill_at = at_now_s() + 3600;
        }
        for (int i = 0; i < cfg->n; i++) {
            if (ch[i].pid || !ch[i].restart_at || at_now_s() < ch[i].restart_at) continue;
            ch[i].restart_at = 0;
            pid_t pid = start(&ch[i], cfg->names[i], self);
            if (pid == 0) {
                *which = i;
                return -1;
            }
            char ps[16];
            snprintf(ps, sizeof ps, "%d", cfg->ports[i]);
            if (pid > 0)
                at_log_write(cfg->log, AT_LOG_INFO, "service restarted", "service", cfg->names[i], "port", ps,
                             NULL);
            else /* try again later */
                ch[i].restart_at = at_now_s() + ch[i].delay;
        }
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0) {
            sleep_s(0.05);
            continue;
        }
        int i = 0;
        while (i < cfg->n && ch[i].pid != pid) i++;
        if (i == cfg->n) continue; /* an orphan we inherited as PID 1 */
        ch[i].pid = 0;
        if (stop_signal) {
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                log_exit(cfg->log, cfg->names[i], st, "service did not stop cleanly");
                status = 1;
            }
            continue;
        }
        log_exit(cfg->log, cfg->names[i], st, "service died; restarting it");
        if (at_now_s() - ch[i].started >= STABLE_AFTER_S) ch[i].delay = RESTART_MIN_S;
        ch[i].restart_at = at_now_s() + ch[i].delay;
        if (ch[i].delay < RESTART_MAX_S) ch[i].delay *= 2;
    }
    return status;
}
