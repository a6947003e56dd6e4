/*
 * process: the life of one long-running program, from `main` to exit, with or without HTTP.
 *
 * Every program of the layers (the servers, and the tools and workers that serve no HTTP:
 * l4-reshard now, layer 6's stream worker and layer 7's relay and projector next) lives the
 * same way, so it is written once here: `--help`, settings (the sets the program lists, plus
 * LOG_LEVEL and SHUTDOWN_TIMEOUT_MS), logging, the event loop (with libevent's pthreads support
 * switched on before it is created, so worker threads may post completions to it), an
 * asynchronous resolver, one maintenance timer a second, and a graceful stop:
 *
 *   SIGTERM/SIGINT -> spec.drain() (finish the current batch, the in-flight requests...)
 *                  -> the program calls process_exit() -> spec.stop() frees -> exit code
 *
 * A program that does not finish within SHUTDOWN_TIMEOUT_MS of the signal is stopped anyway
 * (with a warning, exit 0: the signal asked for it). The HTTP server (server.h) is one user of
 * this module: it adds the listener and the draining of requests on top.
 */
#ifndef LAYERS_PROCESS_H
#define LAYERS_PROCESS_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct process;
struct resolver;

/* The settings every program has (the PROCESS set). */
struct process_config {
    char *log_level;          /* LOG_LEVEL */
    long shutdown_timeout_ms; /* SHUTDOWN_TIMEOUT_MS */
};

struct process_spec {
    const char *program;           /* "l4-reshard" */
    const char *summary;           /* one line for --help */
    const struct config_set *sets; /* the settings sets the program uses, in --help order */
    size_t set_count;              /* entries in sets */
    /* Creates what the program needs; false = exit 1 (stop() still runs). */
    bool (*start)(struct process *process, void *context);
    /* Once a second on the loop: upkeep, health checks, progress... (may be NULL) */
    void (*maintain)(void *context);
    /* A stop signal arrived: finish the current work, then call process_exit(). NULL: exit
     * at once. Called once; a second signal is ignored (the timeout still applies). */
    void (*drain)(void *context);
    /* After the loop has ended: close connections, free everything. (may be NULL) */
    void (*stop)(void *context);
};

/* Runs the program; returns its exit code. */
int process_main(int argc, char **argv, const struct process_spec *spec, void *context);

/* Ends the event loop; process_main() then returns status (the first status given wins). */
void process_exit(struct process *process, int status);

/* A stop signal has arrived (long work should end at its next batch boundary). */
bool process_stopping(const struct process *process);

struct event_base *process_base(struct process *process);
/* Asynchronous host name lookups on the process's loop (resolve.h). */
struct resolver *process_resolver(struct process *process);
const struct process_config *process_config(const struct process *process);
const struct process_spec *process_spec(const struct process *process);

#endif
