/*
 * Unit tests for process.c: a program without HTTP (l4-reshard, layer 6's stream worker, layer
 * 7's relay and projector) starts, runs its maintenance tick, and stops on SIGTERM with exit 0.
 *
 * Each test runs process_main() in a child process (it owns signals and the loop), which reports
 * through a pipe: 's' when started, 't' at each maintenance tick, 'd' when asked to drain, 'x'
 * when stopped. The parent waits for them with deadlines, so a hang fails instead of blocking.
 */
#include "config.h"
#include "process.h"

#include "check_run.h"

#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct worker {
    struct process *process; /* set by start() */
    int report;              /* write end of the pipe to the parent */
    bool finish_on_drain;    /* false: a drain that never ends (the timeout must stop it) */
    long batch;              /* WORKER_BATCH */
};

static struct worker worker;

static const struct config_row worker_rows[] = {
    {"WORKER_BATCH", CONFIG_INT, "7", 1, 100, "entries per batch", &worker.batch, NULL},
};
static const struct config_set worker_sets[] = {CONFIG_SET("worker", worker_rows)};

static void report(struct worker *w, char c)
{
    if (write(w->report, &c, 1) != 1)
        _exit(3);
}

static bool start(struct process *process, void *arg)
{
    struct worker *w = arg;
    w->process = process;
    report(w, 's');
    return true;
}

static void maintain(void *arg)
{
    report(arg, 't');
}

static void drain(void *arg)
{
    struct worker *w = arg;
    report(w, 'd');
    if (w->finish_on_drain)
        process_exit(w->process, 0);
}

static void stop(void *arg)
{
    report(arg, 'x');
}

static const struct process_spec spec = {
    .program = "check-worker",
    .summary = "a program without HTTP",
    CONFIG_SETS(worker_sets),
    .start = start,
    .maintain = maintain,
    .drain = drain,
    .stop = stop,
};

/* Forks a child running process_main(); returns its pid, the pipe's read end in *fd. */
static pid_t spawn(bool finish_on_drain, const char *arg, int *fd)
{
    int p[2];
    ck_assert(pipe(p) == 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        worker.report = p[1];
        worker.finish_on_drain = finish_on_drain;
        setenv("SHUTDOWN_TIMEOUT_MS", "300", 1);
        char *argv[] = {"check-worker", (char *)arg, NULL};
        _exit(process_main(arg ? 2 : 1, argv, &spec, &worker));
    }
    close(p[1]);
    *fd = p[0];
    return pid;
}

/* The next report, or 0 after timeout_ms (or at end of file). */
static char next_report(int fd, int timeout_ms)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    char c;
    if (poll(&pfd, 1, timeout_ms) != 1 || read(fd, &c, 1) != 1)
        return 0;
    return c;
}

/* The next report that is not a maintenance tick (they go on while the child stops). */
static char next_after_ticks(int fd)
{
    char c;
    while ((c = next_report(fd, 3000)) == 't')
        ;
    return c;
}

/* Waits up to timeout_ms for the child; its wait status, or -1. */
static int wait_exit(pid_t pid, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

START_TEST(starts_ticks_and_stops_on_sigterm_with_exit_0)
{
    int fd;
    pid_t pid = spawn(true, NULL, &fd);
    ck_assert_int_eq(next_report(fd, 5000), 's');
    ck_assert_int_eq(next_report(fd, 3000), 't'); /* the maintenance timer: once a second */
    ck_assert_int_eq(next_report(fd, 3000), 't');
    kill(pid, SIGTERM);
    ck_assert_int_eq(next_after_ticks(fd), 'd');
    ck_assert_int_eq(next_report(fd, 3000), 'x');
    int status = wait_exit(pid, 5000);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    close(fd);
}
END_TEST

START_TEST(a_drain_that_never_ends_is_stopped_after_the_timeout)
{
    int fd;
    pid_t pid = spawn(false, NULL, &fd);
    ck_assert_int_eq(next_report(fd, 5000), 's');
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kill(pid, SIGTERM);
    ck_assert_int_eq(next_after_ticks(fd), 'd');
    ck_assert_int_eq(next_after_ticks(fd), 'x');
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    ck_assert_msg(ms >= 250 && ms < 3000, "stopped after %ld ms (SHUTDOWN_TIMEOUT_MS=300)", ms);
    int status = wait_exit(pid, 5000);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    close(fd);
}
END_TEST

START_TEST(help_lists_the_sets_and_starts_nothing)
{
    int fd;
    pid_t pid = spawn(true, "--help", &fd);
    ck_assert_int_eq(next_report(fd, 5000), 0); /* never started */
    int status = wait_exit(pid, 5000);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    close(fd);
}
END_TEST

START_TEST(a_bad_setting_exits_1_before_starting)
{
    setenv("WORKER_BATCH", "1000", 1);
    int fd;
    pid_t pid = spawn(true, NULL, &fd);
    unsetenv("WORKER_BATCH");
    ck_assert_int_eq(next_report(fd, 5000), 0);
    int status = wait_exit(pid, 5000);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d", status);
    close(fd);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("process");
    TCase *life = tcase_create("life");
    tcase_set_timeout(life, 30);
    tcase_add_test(life, starts_ticks_and_stops_on_sigterm_with_exit_0);
    tcase_add_test(life, a_drain_that_never_ends_is_stopped_after_the_timeout);
    tcase_add_test(life, help_lists_the_sets_and_starts_nothing);
    tcase_add_test(life, a_bad_setting_exits_1_before_starting);
    suite_add_tcase(suite, life);
    return check_run(suite, CK_NOFORK) ? EXIT_FAILURE
                                       : EXIT_SUCCESS; /* the tests fork their own children */
}
