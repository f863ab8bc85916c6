/* execd-bench-baseline: what the execd benchmarks compare against, in plain libc.
 *
 *   execd-bench-baseline spawn SHELL N WARMUP
 *       posix_spawn(SHELL -c true) + waitpid, N times after WARMUP warm-ups;
 *       prints the median and spread of one fork+exec+wait.
 *   execd-bench-baseline pipe COMMAND EXPECTED_BYTES
 *       popen(COMMAND) and read(2) everything from the pipe; prints the wall
 *       time, the bytes and the newlines read, and fails when the byte count
 *       is not EXPECTED_BYTES.
 *
 * Results go to stdout as "key value" lines; errors make the exit status non-zero.
 */
#include <errno.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p)
{
        double idx = p * (n - 1);
        int lo = (int) idx;
        int hi = lo + 1 < n ? lo + 1 : lo;
        return v[lo] + (v[hi] - v[lo]) * (idx - lo);
}

static int do_spawn(const char *shell, int n, int warmup)
{
        char *argv[] = { (char *) shell, (char *) "-c", (char *) "true", NULL };
        double *v = calloc(n, sizeof *v);

        for (int i = 0; i < warmup + n; i++) {
                pid_t pid;
                int status;
                double t0 = now();
                int r = posix_spawn(&pid, shell, NULL, NULL, argv, environ);
                if (r != 0) {
                        fprintf(stderr, "posix_spawn %s: %s\n", shell, strerror(r));
                        return 1;
                }
                while (waitpid(pid, &status, 0) < 0) {
                        if (errno != EINTR) {
                                perror("waitpid");
                                return 1;
                        }
                }
                double t1 = now();
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        fprintf(stderr, "%s -c true: status 0x%x\n", shell, status);
                        return 1;
                }
                if (i >= warmup)
                        v[i - warmup] = t1 - t0;
        }
        qsort(v, n, sizeof *v, cmp_double);
        printf("requests %d\n", n);
        printf("median_s %.9f\n", pct(v, n, 0.5));
        printf("p10_s %.9f\n", pct(v, n, 0.1));
        printf("p90_s %.9f\n", pct(v, n, 0.9));
        printf("min_s %.9f\n", v[0]);
        printf("max_s %.9f\n", v[n - 1]);
        free(v);
        return 0;
}

static int do_pipe(const char *command, int64_t expected)
{
        static char buf[256 * 1024];
        int64_t bytes = 0, lines = 0;
        double t0 = now();
        FILE *f = popen(command, "r");

        if (!f) {
                perror("popen");
                return 1;
        }
        int fd = fileno(f);
        for (;;) {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("read");
                        return 1;
                }
                if (r == 0)
                        break;
                bytes += r;
                for (const char *p = buf, *e = buf + r; (p = memchr(p, '\n', e - p)); p++)
                        lines++;
        }
        int status = pclose(f);
        double t1 = now();
        if (status != 0) {
                fprintf(stderr, "%s: status 0x%x\n", command, status);
                return 1;
        }
        if (bytes != expected) {
                fprintf(stderr, "%s: read %" PRId64 " bytes, expected %" PRId64 "\n",
                        command, bytes, expected);
                return 1;
        }
        printf("wall_s %.6f\n", t1 - t0);
        printf("bytes %" PRId64 "\n", bytes);
        printf("lines %" PRId64 "\n", lines);
        return 0;
}

int main(int argc, char **argv)
{
        if (argc == 5 && strcmp(argv[1], "spawn") == 0)
                return do_spawn(argv[2], atoi(argv[3]), atoi(argv[4]));
        if (argc == 4 && strcmp(argv[1], "pipe") == 0)
                return do_pipe(argv[2], strtoll(argv[3], NULL, 10));
        fprintf(stderr, "usage: execd-bench-baseline spawn SHELL N WARMUP\n"
                        "       execd-bench-baseline pipe COMMAND EXPECTED_BYTES\n");
        return 2;
}
