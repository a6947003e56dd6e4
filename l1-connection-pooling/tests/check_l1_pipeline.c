/*
 * Layer 1 black-box tests in pipeline mode (DB_POOL_MODE=pipeline): the whole suite of
 * check_l1.c against a server whose pool pipelines its queries, plus the pipeline's own cases
 * (answers matched to requests, a killed database, deadlines).
 */
#define L1_PIPELINE
#include "check_l1.c"
