/*
 * Layer 0: a new PostgreSQL connection for every query, closed right after.
 */
#ifndef L0_CONNECT_PER_REQUEST_H
#define L0_CONNECT_PER_REQUEST_H

#include "pgconn.h"

struct layer;

/*
 * Opens a connection, runs one query, closes the connection. `cb` is called exactly once, from
 * the event loop; `sql` and `values` must stay valid until then (they are not copied).
 */
void query_on_new_connection(struct layer *layer, const char *sql, int nparams,
                             const char *const *values, pgconn_result_cb cb, void *arg);

#endif
