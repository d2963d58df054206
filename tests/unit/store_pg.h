/*
 * A throw-away PostgreSQL server for the unit tests that need one
 * (store_pg_*.c, billing_pg*.c): scripts/pg_server.sh starts a fresh cluster
 * in a temporary directory on 127.0.0.1 and a free port; it is stopped and
 * removed at exit. MAAS_PG_URL=postgresql://... uses an existing server
 * instead (each test then works in databases of its own, created here).
 *
 *   pg_test_start()          0 when a server is up; 77 when PostgreSQL is not
 *                            installed (pg_skip_reason says why); -1 on failure
 *   pg_test_db(name, url)    creates database `name` (dropping an old one) and
 *                            writes its URL into url (512 bytes)
 */
#ifndef MAAS_TEST_STORE_PG_H
#define MAAS_TEST_STORE_PG_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char pg_test_dir[256];
static char pg_test_base[512]; /* URL of the server's "postgres" database, without the database name */
static char pg_skip_reason[512];
static pid_t pg_test_owner;

static void pg_test_stop(void)
{
    if (!pg_test_dir[0] || getpid() != pg_test_owner)
        return;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "scripts/pg_server.sh stop '%s/pg' >/dev/null 2>&1; rm -rf '%s'", pg_test_dir, pg_test_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "pg_test_stop: could not stop the server in %s\n", pg_test_dir);
    pg_test_dir[0] = '\0';
}

static int pg_test_start(void)
{
    const char *env = getenv("MAAS_PG_URL");
    if (env && *env) {
        /* strip the database name: keep "postgresql://user@host:port/" */
        snprintf(pg_test_base, sizeof pg_test_base, "%s", env);
        char *slash = strchr(strstr(pg_test_base, "://") + 3, '/');
        if (slash)
            slash[1] = '\0';
        return 0;
    }
    snprintf(pg_test_dir, sizeof pg_test_dir, "/tmp/maas-pgtest-XXXXXX");
    if (!mkdtemp(pg_test_dir))
        return -1;
    pg_test_owner = getpid();
    atexit(pg_test_stop);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "scripts/pg_server.sh start '%s/pg' 2>&1", pg_test_dir);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char line[512] = "", last[512] = "";
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0])
            snprintf(last, sizeof last, "%s", line);
    }
    int st = pclose(f);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (code == 77) {
        snprintf(pg_skip_reason, sizeof pg_skip_reason, "%s", last);
        return 77;
    }
    if (code != 0 || strncmp(last, "postgresql://", 13) != 0) {
        fprintf(stderr, "pg_test_start: scripts/pg_server.sh failed (%d): %s\n", code, last);
        return -1;
    }
    snprintf(pg_test_base, sizeof pg_test_base, "%s", last);
    char *slash = strrchr(pg_test_base, '/');
    slash[1] = '\0';
    return 0;
}

static int pg_test_db(const char *name, char *url)
{
    char admin[600];
    snprintf(admin, sizeof admin, "%spostgres", pg_test_base);
    PGconn *c = PQconnectdb(admin);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "pg_test_db: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    char sql[300];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "pg_test_db: %s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    snprintf(url, 512, "%s%s", pg_test_base, name);
    return ok ? 0 : -1;
}

#endif
