/*
 * log: levelled log lines (see log.h).
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level log_threshold = LOG_LEVEL_INFO;

const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};

bool log_level_parse(const char *name, enum log_level *out)
{
    for (size_t i = 0; log_level_names[i] != NULL; i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    return false;
}

void log_write(enum log_level level, const char *request_id, const char *fmt, ...)
{
    char line[2048];
    struct timeval now;
    struct tm tm;
    gettimeofday(&now, NULL);
    gmtime_r(&now.tv_sec, &tm);

    int len = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                       tm.tm_sec, (long)(now.tv_usec / 1000), log_level_names[level]);
    if (request_id != NULL)
        len += snprintf(line + len, sizeof line - (size_t)len, "[%s] ", request_id);

    va_list ap;
    va_start(ap, fmt);
    int body = vsnprintf(line + len, sizeof line - (size_t)len, fmt, ap);
    va_end(ap);
    if (body < 0)
        body = 0;
    len += body;
    if ((size_t)len >= sizeof line - 1)
        len = (int)sizeof line - 2; /* truncated: keep the newline */
    line[len++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, (size_t)len);
    (void)ignored;
}
