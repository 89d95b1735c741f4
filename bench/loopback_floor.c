/* The floor under realtime fan-out on this machine: what the kernel alone charges a writer for
 * one write to each of N loopback TCP sockets whose reader is an epoll loop in another process,
 * the work bench/realtime.sh's tandem does once per stream per wake. No HTTP, no tandem: the
 * writer makes N connected pairs, a forked reader drains its ends with epoll, and the writer
 * sends BYTES to every socket PASSES times, back to back. Prints the writer's CPU (user +
 * system, which includes the loopback receive path the kernel runs in the sender's context)
 * per write, the wall time of one pass over all N sockets, and the reader's CPU per write.
 *
 * With WRITERS > 1 the sockets are split among that many threads (as tandem splits its streams
 * among libmicrohttpd's workers, one per core), which meet at a barrier after every pass.
 *
 * usage: loopback_floor [N=10000] [PASSES=20] [BYTES=1500] [WRITERS=1]
 * build: cc -O2 -pthread -o loopback_floor bench/loopback_floor.c */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* drains every socket until `total` bytes arrived, then exits */
static void reader(const int *fds, int n, long long total)
{
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0)
            die("epoll_ctl");
    }
    static char buf[65536];
    struct epoll_event evs[256];
    long long got = 0;
    while (got < total) {
        int k = epoll_wait(ep, evs, 256, 10000);
        if (k <= 0)
            die("reader: epoll_wait timed out or failed");
        for (int i = 0; i < k; i++) {
            ssize_t r = read(evs[i].data.fd, buf, sizeof buf);
            if (r > 0)
                got += r;
            else if (r == 0 || errno != EAGAIN)
                die("reader: read");
        }
    }
    printf("reader cpu %.3f s\n", cpu_s(RUSAGE_SELF));
    exit(0);
}

struct writer {
    const int *fds;
    int n, passes, bytes;
    const char *msg;
    pthread_barrier_t *bar;
};

static void *write_passes(void *arg)
{
    const struct writer *w = arg;
    for (int p = 0; p < w->passes; p++) {
        for (int i = 0; i < w->n; i++)
            if (write(w->fds[i], w->msg, (size_t)w->bytes) != w->bytes)
                die("write");
        pthread_barrier_wait(w->bar);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10000;
    int passes = argc > 2 ? atoi(argv[2]) : 20;
    int bytes = argc > 3 ? atoi(argv[3]) : 1500;
    int writers = argc > 4 ? atoi(argv[4]) : 1;
    if (n < 1 || passes < 1 || bytes < 1 || bytes > 65536 || writers < 1 || writers > 64) {
        fprintf(stderr, "usage: loopback_floor [N] [PASSES] [BYTES<=65536] [WRITERS<=64]\n");
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) < 0)
        die("listen");
    int *cli = calloc((size_t)n, sizeof *cli), *srv = calloc((size_t)n, sizeof *srv);
    if (!cli || !srv)
        die("calloc");
    for (int i = 0; i < n; i++) {
        cli[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (cli[i] < 0)
            die("socket (raise ulimit -n)");
        if (connect(cli[i], (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS)
            die("connect");
        srv[i] = accept(ls, NULL, NULL);
        if (srv[i] < 0)
            die("accept");
        int one = 1; /* as libmicrohttpd streams: no Nagle */
        setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        for (int i = 0; i < n; i++)
            close(srv[i]);
        reader(cli, n, (long long)n * passes * bytes);
    }
    for (int i = 0; i < n; i++)
        close(cli[i]);

    char *msg = malloc((size_t)bytes);
    if (!msg)
        die("malloc");
    memset(msg, 'x', (size_t)bytes);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)writers + 1);
    struct writer *w = calloc((size_t)writers, sizeof *w);
    pthread_t *th = calloc((size_t)writers, sizeof *th);
    if (!w || !th)
        die("calloc");
    double c0 = cpu_s(RUSAGE_SELF), t0 = now_s(), worst = 0;
    for (int k = 0; k < writers; k++) {
        int lo = (int)((long long)n * k / writers), hi = (int)((long long)n * (k + 1) / writers);
        w[k] = (struct writer){srv + lo, hi - lo, passes, bytes, msg, &bar};
        if (pthread_create(&th[k], NULL, write_passes, &w[k]) != 0)
            die("pthread_create");
    }
    for (int p = 0; p < passes; p++) {
        double ps = now_s();
        pthread_barrier_wait(&bar);
        double d = now_s() - ps;
        if (d > worst)
            worst = d;
    }
    for (int k = 0; k < writers; k++)
        pthread_join(th[k], NULL);
    double wall = now_s() - t0, cpu = cpu_s(RUSAGE_SELF) - c0;
    int st;
    waitpid(pid, &st, 0);
    double writes = (double)n * passes;
    printf(
        "%d sockets x %d passes x %d bytes, %d writer(s): writer cpu %.2f us/write, pass %.1f ms "
        "(worst %.1f ms), %.0f writes/s\n",
        n, passes, bytes, writers, cpu / writes * 1e6, wall / passes * 1e3, worst * 1e3,
        writes / wall);
    printf("reader cpu per write %.2f us\n", cpu_s(RUSAGE_CHILDREN) / writes * 1e6);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
