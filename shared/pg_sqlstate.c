/*
 * pg_sqlstate: SQLSTATE classification (see pg_sqlstate.h). A pure function: no state.
 */
#include "pg_sqlstate.h"

#include <string.h>

enum pg_status pg_classify_sqlstate(const char *sqlstate)
{
    if (sqlstate == NULL)
        return PG_UNAVAILABLE; /* no server error: the connection itself failed */
    /* 08 connection exception, 53 insufficient resources, 57 operator intervention
     * (57014: statement_timeout cancelled the query), 58 system error. */
    if (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "53", 2) == 0 ||
        strncmp(sqlstate, "57", 2) == 0 || strncmp(sqlstate, "58", 2) == 0)
        return PG_UNAVAILABLE;
    return PG_ERROR;
}
