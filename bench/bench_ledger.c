/*
 * bench_ledger — how fast the ledger admits and settles requests.
 *
 *   build/bench/bench_ledger [DIR] [N]
 *
 * Uses a fresh ledger in DIR (default build/bench-ledger, on the same disk as
 * the project, so fsync is real) with synchronous=FULL, as the server runs it.
 *   1. admissions/s: N holds placed by 8 threads (each one write transaction).
 *   2. settlements/s through the group-commit writer: N settlements by 64
 *      concurrent callers, each waiting until its record is committed.
 *   3. the same with one transaction per settlement (no writer thread), the
 *      baseline the group commit is measured against.
 *   4. single-caller latency of admit and settle (what one request pays).
 * Prints one "key value" line per figure and a final JSON line, and checks
 * that the ledger balances at the end.
 */
#include "billing/billing.h"

#include <pthread.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIT_THREADS 8
#define SETTLE_THREADS 64

static struct billing *bl;
static char key[BILLING_KEY_LEN + 1];
static char (*ids)[BILLING_ID_MAX];
static int n_req;
static int next_i;

static void die(const char *what, const struct err *e)
{
    fprintf(stderr, "bench_ledger: %s: %s\n", what, e->msg);
    exit(1);
}

static int take(void)
{
    return __atomic_fetch_add(&next_i, 1, __ATOMIC_RELAXED);
}

static void *admit_worker(void *arg)
{
    (void)arg;
    for (int i; (i = take()) < n_req;) {
        struct err e;
        struct billing_admission a;
        struct billing_request r = {.key = key, .model = "bench", .prompt_tokens = 500, .max_tokens = 200};
        if (billing_admit(bl, &r, &a, &e))
            die(e.code == ERR_REFUSED ? "admission refused" : "admit", &e);
        memcpy(ids[i], a.request_id, BILLING_ID_MAX);
    }
    return NULL;
}

static void *settle_worker(void *arg)
{
    (void)arg;
    for (int i; (i = take()) < n_req;) {
        struct err e;
        struct billing_usage u;
        if (billing_settle(bl, ids[i], 500, 100, 150, "stop", &u, &e))
            die("settle", &e);
    }
    return NULL;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static double last_cpu; /* CPU seconds (all threads) of the last run() */

static double run(void *(*fn)(void *), int n_threads)
{
    double c0 = cpu_seconds();
    pthread_t th[SETTLE_THREADS];
    next_i = 0;
    uint64_t t0 = now_ns();
    for (int i = 0; i < n_threads; i++)
        pthread_create(&th[i], NULL, fn, NULL);
    for (int i = 0; i < n_threads; i++)
        pthread_join(th[i], NULL);
    last_cpu = cpu_seconds() - c0;
    return (double)(now_ns() - t0) / 1e9;
}

static void open_ledger(const char *dir, int writer)
{
    struct err e;
    struct billing_options o = {.db = dir, .writer = writer, .n_conn = 8, .node = "bench"};
    if (billing_open(&o, &bl, &e))
        die("open", &e);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "build/bench-ledger";
    int n = argc > 2 ? atoi(argv[2]) : 20000;
    if (n < 100)
        n = 100;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    ids = calloc((size_t)n, sizeof *ids);
    struct err e;

    open_ledger(dir, 1);
    char acct[BILLING_ID_MAX];
    if (billing_account_create(bl, "bench", INT64_C(1000000) * BILLING_MICRO, acct, &e))
        die("account", &e);
    if (billing_key_create(bl, acct, NULL, key, NULL, &e))
        die("key", &e);
    struct billing_price p = {.model = "bench", .input = 3000000, .cached_input = 300000, .output = 15000000};
    if (billing_price_set(bl, &p, &e))
        die("price", &e);

    /* 1 + 2: admissions, then settlements through the writer */
    n_req = n;
    double t_admit = run(admit_worker, ADMIT_THREADS);
    double cpu_admit = last_cpu;
    double t_group = run(settle_worker, SETTLE_THREADS);
    double cpu_group = last_cpu;
    struct billing_writer_stats ws;
    billing_writer_stats(bl, &ws);
    billing_close(bl);

    /* 3: one transaction per settlement */
    int n_sync = n / 4;
    open_ledger(dir, 0);
    n_req = n_sync;
    run(admit_worker, ADMIT_THREADS);
    double t_sync = run(settle_worker, SETTLE_THREADS);
    billing_close(bl);

    /* 4: single-caller latency */
    open_ledger(dir, 1);
    int n_lat = 500;
    n_req = n_lat;
    double t_lat_admit = run(admit_worker, 1);
    double t_lat_settle = run(settle_worker, 1);
    if (billing_audit(bl, &e))
        die("audit", &e);
    billing_close(bl);

    double admit_rate = n / t_admit, group_rate = n / t_group, sync_rate = n_sync / t_sync;
    double admit_us = t_lat_admit / n_lat * 1e6, settle_us = t_lat_settle / n_lat * 1e6;
    printf("admissions_per_s %.0f\n", admit_rate);
    printf("settlements_per_s_group_commit %.0f\n", group_rate);
    printf("settlements_per_s_one_tx_each %.0f\n", sync_rate);
    printf("group_commit_speedup %.2f\n", group_rate / sync_rate);
    printf("settlements_per_group_commit %.1f\n", (double)ws.settlements / (double)(ws.groups ? ws.groups : 1));
    double w_cpu_us = (double)ws.cpu_ns / 1e3 / (double)(ws.settlements ? ws.settlements : 1);
    double w_busy_ms = (double)ws.busy_ns / 1e6 / (double)(ws.groups ? ws.groups : 1);
    printf("writer_cpu_us_per_settlement %.1f\n", w_cpu_us);
    printf("writer_ms_per_group_commit %.2f\n", w_busy_ms);
    printf("admit_cpu_us %.1f\n", cpu_admit / n * 1e6);
    printf("settle_cpu_us %.1f\n", cpu_group / n * 1e6);
    printf("admit_latency_us %.1f\n", admit_us);
    printf("settle_latency_us %.1f\n", settle_us);
    printf("{\"bench\":\"ledger\",\"requests\":%d,\"admissions_per_s\":%.0f,\"settlements_per_s_group_commit\":%.0f,"
           "\"settlements_per_s_one_tx_each\":%.0f,\"group_commit_speedup\":%.2f,\"settlements_per_group\":%.1f,"
           "\"writer_cpu_us_per_settlement\":%.1f,\"writer_ms_per_group_commit\":%.2f,\"admit_cpu_us\":%.1f,"
           "\"settle_cpu_us\":%.1f,\"admit_latency_us\":%.1f,\"settle_latency_us\":%.1f,\"audit\":\"ok\"}\n",
           n, admit_rate, group_rate, sync_rate, group_rate / sync_rate,
           (double)ws.settlements / (double)(ws.groups ? ws.groups : 1), w_cpu_us, w_busy_ms, cpu_admit / n * 1e6,
           cpu_group / n * 1e6, admit_us, settle_us);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    free(ids);
    return system(cmd) != 0;
}
