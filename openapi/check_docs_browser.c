/*
 * check_docs_browser: layer 1's /docs in a real browser (openapi/browser_test.js, headless
 * Debian chromium over the DevTools protocol), against a real server and PostgreSQL started by
 * the testkit. The screenshot it takes is the one the top README shows (docs/l1-docs.png is a
 * copy of build/openapi/l1-docs.png).
 *
 * Needs the npm tools (./layers deps; ./layers test sets LAYERS_NPM_DIR) and chromium: without
 * them it is skipped (77), except in CI (CI=true), where that is a failure.
 */
#include "testkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#define PG_PORT     22190
#define SERVER_PORT 22191

static int missing(const char *what)
{
    const char *ci = getenv("CI");
    fprintf(stderr, "browser test: %s (./layers deps installs it)\n", what);
    return ci != NULL && strcmp(ci, "true") == 0 ? 1 : 77;
}

int main(void)
{
    const char *npm_dir = getenv("LAYERS_NPM_DIR");
    char ws[600], assets[600], docs_env[700], url_env[200], api[64];
    if (npm_dir == NULL || npm_dir[0] == '\0')
        return missing("LAYERS_NPM_DIR is not set");
    snprintf(ws, sizeof ws, "%s/node_modules/ws/package.json", npm_dir);
    snprintf(assets, sizeof assets, "%s/node_modules/swagger-ui-dist", npm_dir);
    if (access(ws, R_OK) != 0)
        return missing("the npm package ws is not installed");
    if (system("command -v chromium >/dev/null && command -v node >/dev/null") != 0)
        return missing("chromium or node is not installed");

    struct tk_pg pg;
    if (!tk_pg_start(&pg, PG_PORT, NULL))
        return 1;
    snprintf(docs_env, sizeof docs_env, "DOCS_DIR=%s", assets);
    snprintf(url_env, sizeof url_env, "DATABASE_URL=%s", pg.url);
    const char *env[] = {docs_env, url_env, NULL};
    struct tk_server server;
    int status = 1;
    if (tk_server_start(&server, SERVER_BIN, SERVER_PORT, env)) {
        snprintf(api, sizeof api, "http://127.0.0.1:%d", SERVER_PORT);
        pid_t pid = fork();
        if (pid == 0) {
            execlp("node", "node", BROWSER_TEST_JS, api, npm_dir, SCREENSHOT, (char *)NULL);
            perror("exec node");
            _exit(127);
        }
        int wstatus = 0;
        if (pid > 0 && waitpid(pid, &wstatus, 0) == pid && WIFEXITED(wstatus))
            status = WEXITSTATUS(wstatus);
        tk_server_stop(&server, SIGTERM, 10000);
    }
    tk_pg_destroy(&pg);
    return status == 0 ? 0 : 1;
}
