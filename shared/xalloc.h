/*
 * xalloc: allocation that cannot fail.
 *
 * A server that runs out of memory cannot answer anything sensibly, so every allocation goes
 * through these wrappers, which abort with a message instead of returning NULL. Every other
 * failure (a database down, a client gone) is normal life and is handled where it happens.
 */
#ifndef LAYERS_XALLOC_H
#define LAYERS_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
