/*
 * log: levelled log lines on stderr, each prefixed with a time, the level and (when there is
 * one) the request id, so that one request can be followed through the log.
 *
 * The level is checked before any formatting happens (LOG_* are macros), so debug lines cost a
 * comparison when they are off. Output is one write(2) per line, so lines from the worker
 * threads of later layers never interleave mid-line.
 */
#ifndef LAYERS_LOG_H
#define LAYERS_LOG_H

#include <stdbool.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

extern enum log_level log_threshold; /* lines below this level are skipped */

/* "debug", "info", "warn", "error", NULL: the values of LOG_LEVEL (a CONFIG_ENUM row). */
extern const char *const log_level_names[];

/* Parses "debug", "info", "warn" or "error"; false for anything else. */
bool log_level_parse(const char *name, enum log_level *out) __attribute__((warn_unused_result));

void log_write(enum log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_AT(level, rid, ...)                                                                    \
    do {                                                                                           \
        if ((level) >= log_threshold)                                                              \
            log_write((level), (rid), __VA_ARGS__);                                                \
    } while (0)

#define LOG_DEBUG(...) LOG_AT(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)
#define LOG_INFO(...)  LOG_AT(LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define LOG_WARN(...)  LOG_AT(LOG_LEVEL_WARN, NULL, __VA_ARGS__)
#define LOG_ERROR(...) LOG_AT(LOG_LEVEL_ERROR, NULL, __VA_ARGS__)

/* The same, for a line that belongs to one request. */
#define RLOG_DEBUG(rid, ...) LOG_AT(LOG_LEVEL_DEBUG, (rid), __VA_ARGS__)
#define RLOG_INFO(rid, ...)  LOG_AT(LOG_LEVEL_INFO, (rid), __VA_ARGS__)
#define RLOG_WARN(rid, ...)  LOG_AT(LOG_LEVEL_WARN, (rid), __VA_ARGS__)
#define RLOG_ERROR(rid, ...) LOG_AT(LOG_LEVEL_ERROR, (rid), __VA_ARGS__)

#endif
