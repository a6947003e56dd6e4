/*
 * Layer 0: a new PostgreSQL connection for every query, closed right after.
 */
#ifndef L0_CONNECT_PER_REQUEST_H
#define L0_CONNECT_PER_REQUEST_H

#include "pgconn.h"

struct layer;

/*
 * Opens a connection, runs one query, closes the connection. The call's callback is called
 * exactly once, from the event loop; the call is copied, its strings must stay valid until then.
 */
void query_on_new_connection(struct layer *layer, const struct pg_call *call);

#endif
