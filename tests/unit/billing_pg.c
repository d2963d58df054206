/* billing on a shared PostgreSQL ledger, with several processes standing in
 * for several nodes (each its own node name and connections), against a real
 * server started for the test (tests/unit/store_pg.h):
 *   - admissions from 4 processes x 4 threads never overdraw: exactly the
 *     covered number of holds is admitted;
 *   - rate limits and budgets are counted across processes;
 *   - settling one request from 4 processes at once writes one record, and
 *     every settler gets that record back;
 *   - a dead process's holds are released by another node at once (its lease
 *     is gone), a live one's are not, and any hold past the timeout is;
 *   - nodes are killed with SIGKILL under load and restarted under new names:
 *     every settlement a process saw complete has exactly one record with its
 *     cost, balance = credits - settled costs, no account below zero, no hold
 *     left after recovery, and the audit passes. */
#include "billing/billing.h"
#include "store/store.h"
#include "store_pg.h"
#include "test.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <sys/stat.h>
#include <time.h>

static int pg_ok;
static char secret_path[300];
static char url[512];

#define NEED_PG()                                                  \
    do {                                                           \
        if (pg_ok == 77)                                           \
            SKIP(pg_skip_reason);                                  \
        CHECKF(pg_ok == 0, "no PostgreSQL server for the test");   \
        if (pg_ok)                                                 \
            return;                                                \
    } while (0)

static int64_t fake_now;
static int64_t clock_fn(void *ctx)
{
    (void)ctx;
    return __atomic_load_n(&fake_now, __ATOMIC_SEQ_CST);
}

static struct billing *open_node(const char *node, int writer, int use_clock)
{
    struct err e = {0};
    /* a shorter grace than the default keeps the recovery tests quick */
    struct billing_options o = {.db = url, .secret_file = secret_path, .node = node, .writer = writer, .n_conn = 4,
                                .lease_check_ms = 100, .lease_grace_ms = 1000};
    if (use_clock) {
        o.now = clock_fn;
        o.now_ctx = NULL;
    }
    struct billing *b = NULL;
    if (billing_open(&o, &b, &e)) {
        fprintf(stderr, "  billing_open(%s): %s\n", node, e.msg);
        return NULL;
    }
    return b;
}

/* a fresh database, an account with `credit`, a key with spec and a price of
 * 1 unit per million tokens for everything (so a hold is prompt + max_tokens
 * micro-units) */
static struct billing *fresh(const char *db, int64_t credit, const struct billing_key_spec *spec, char *acct, char *key)
{
    struct err e = {0};
    if (pg_test_db(db, url))
        return NULL;
    struct billing *b = open_node("setup", 0, 0);
    if (!b)
        return NULL;
    struct billing_price p = {.model = "m", .input = 1000000, .cached_input = 1000000, .output = 1000000};
    CHECKF(billing_price_set(b, &p, &e) == 0, "%s", e.msg);
    CHECKF(billing_account_create(b, "shared", credit, acct, &e) == 0, "%s", e.msg);
    CHECKF(billing_key_create(b, acct, spec, key, NULL, &e) == 0, "%s", e.msg);
    return b;
}

static void audit_ok(struct billing *b)
{
    struct err e = {0};
    CHECKF(billing_audit(b, &e) == 0, "%s", e.msg);
}

/* ---- admissions from several processes ---- */

struct adm_ctx {
    struct billing *b;
    const char *key;
    int n_try;
    int admitted, refused_402, refused_429, errors;
};

static void *adm_thread(void *p)
{
    struct adm_ctx *c = p;
    for (int i = 0; i < c->n_try; i++) {
        struct err e;
        struct billing_admission a;
        struct billing_request r = {.key = c->key, .model = "m", .prompt_tokens = 600, .max_tokens = 400};
        int rc = billing_admit(c->b, &r, &a, &e);
        if (rc && e.code != ERR_REFUSED) {
            fprintf(stderr, "  admit: %s\n", e.msg);
            __atomic_add_fetch(&c->errors, 1, __ATOMIC_SEQ_CST);
        } else if (rc == 0) {
            __atomic_add_fetch(&c->admitted, 1, __ATOMIC_SEQ_CST);
        } else if (e.reason == BILLING_INSUFFICIENT) {
            __atomic_add_fetch(&c->refused_402, 1, __ATOMIC_SEQ_CST);
        } else if (e.reason == BILLING_RATE_LIMITED || e.reason == BILLING_BUDGET_EXCEEDED) {
            __atomic_add_fetch(&c->refused_429, 1, __ATOMIC_SEQ_CST);
        } else {
            __atomic_add_fetch(&c->errors, 1, __ATOMIC_SEQ_CST);
        }
    }
    return NULL;
}

/* Forks n_proc processes (nodes "node-<i>") that each run n_thr threads of
 * n_try admissions, all released at once; sums what they report. */
static void admit_from_processes(const char *key, int n_proc, int n_thr, int n_try, int *admitted, int *r402, int *r429,
                                 int *errors)
{
    int res[2], go[2];
    CHECK(pipe(res) == 0 && pipe(go) == 0);
    fflush(NULL);
    pid_t kids[8];
    for (int i = 0; i < n_proc; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            close(res[0]);
            close(go[1]);
            char node[32];
            snprintf(node, sizeof node, "node-%d", i);
            struct billing *b = open_node(node, 0, 0);
            if (!b)
                _exit(2);
            char c;
            if (read(go[0], &c, 1) != 0)
                _exit(3);
            struct adm_ctx ctx = {b, key, n_try, 0, 0, 0, 0};
            pthread_t th[8];
            for (int t = 0; t < n_thr; t++)
                pthread_create(&th[t], NULL, adm_thread, &ctx);
            for (int t = 0; t < n_thr; t++)
                pthread_join(th[t], NULL);
            int out[4] = {ctx.admitted, ctx.refused_402, ctx.refused_429, ctx.errors};
            if (write(res[1], out, sizeof out) != (ssize_t)sizeof out)
                _exit(4);
            billing_close(b);
            _exit(0);
        }
    }
    close(res[1]);
    close(go[0]);
    usleep(300000); /* let every process connect */
    close(go[1]);
    *admitted = *r402 = *r429 = *errors = 0;
    for (int i = 0; i < n_proc; i++) {
        int out[4];
        CHECK(read(res[0], out, sizeof out) == (ssize_t)sizeof out);
        *admitted += out[0];
        *r402 += out[1];
        *r429 += out[2];
        *errors += out[3];
    }
    close(res[0]);
    for (int i = 0; i < n_proc; i++) {
        int st = 0;
        waitpid(kids[i], &st, 0);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "process %d: status %d", i, st);
    }
}

TEST(admissions_never_overdraw)
{
    NEED_PG();
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    struct billing *b = fresh("bp_overdraw", 37 * 1000, NULL, acct, key); /* covers 37 holds of 1000 */
    CHECK(b != NULL);
    if (!b)
        return;
    int admitted, r402, r429, errors;
    admit_from_processes(key, 4, 4, 6, &admitted, &r402, &r429, &errors); /* 96 tries */
    CHECKF(admitted == 37, "admitted %d", admitted);
    CHECK(r402 == 96 - 37 && r429 == 0 && errors == 0);
    struct err e;
    struct billing_account a;
    CHECK(billing_account_get(b, acct, &a, &e) == 0);
    CHECK(a.held == 37 * 1000 && a.balance == 37 * 1000);
    audit_ok(b);
    billing_close(b);
}

TEST(limits_count_across_processes)
{
    NEED_PG();
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    struct billing_key_spec rpm = {.rpm = 10};
    struct billing *b = fresh("bp_rpm", 1000 * 1000, &rpm, acct, key);
    CHECK(b != NULL);
    if (!b)
        return;
    int admitted, r402, r429, errors;
    admit_from_processes(key, 4, 2, 4, &admitted, &r402, &r429, &errors); /* 32 tries */
    CHECKF(admitted == 10 && r429 == 22 && errors == 0, "admitted %d, 429 %d, errors %d", admitted, r429, errors);
    billing_close(b);

    struct billing_key_spec budget = {.budget = 7 * 1000, .budget_period = BILLING_PERIOD_TOTAL};
    b = fresh("bp_budget", 1000 * 1000, &budget, acct, key);
    CHECK(b != NULL);
    if (!b)
        return;
    admit_from_processes(key, 4, 2, 4, &admitted, &r402, &r429, &errors);
    CHECKF(admitted == 7 && r429 == 25 && errors == 0, "admitted %d, 429 %d, errors %d", admitted, r429, errors);
    audit_ok(b);
    billing_close(b);
}

/* ---- one request settled by several processes at once ---- */

struct rows {
    struct billing_usage_row rows[64];
    int n;
};

static int collect_row(void *ctx, const struct billing_usage_row *row)
{
    struct rows *r = ctx;
    if (r->n < 64)
        r->rows[r->n++] = *row;
    return 0;
}

static int find_row(const struct rows *r, const char *id)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->rows[i].group, id))
            return i;
    return -1;
}

TEST(settle_once_across_processes)
{
    NEED_PG();
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    struct billing *b = fresh("bp_settle", 100 * 1000, NULL, acct, key);
    CHECK(b != NULL);
    if (!b)
        return;
    enum { N = 20, P = 4 };
    char ids[N][BILLING_ID_MAX];
    struct err e;
    for (int i = 0; i < N; i++) {
        struct billing_admission a;
        struct billing_request r = {.key = key, .model = "m", .prompt_tokens = 600, .max_tokens = 400};
        CHECK(billing_admit(b, &r, &a, &e) == 0);
        snprintf(ids[i], sizeof ids[i], "%s", a.request_id);
    }
    int res[2], go[2];
    CHECK(pipe(res) == 0 && pipe(go) == 0);
    fflush(NULL);
    pid_t kids[P];
    for (int p = 0; p < P; p++) {
        kids[p] = fork();
        if (kids[p] == 0) {
            close(res[0]);
            close(go[1]);
            char node[32];
            snprintf(node, sizeof node, "settler-%d", p);
            struct billing *cb = open_node(node, 1, 0); /* through the group-commit writer */
            if (!cb)
                _exit(2);
            char c;
            if (read(go[0], &c, 1) != 0)
                _exit(3);
            for (int i = 0; i < N; i++) {
                struct billing_usage u;
                struct err ce;
                /* each process reports different usage: only one may stand */
                int64_t got[3] = {p, i, -1};
                if (billing_settle(cb, ids[i], 600, 0, 10 * (p + 1), "stop", &u, &ce) == 0)
                    got[2] = u.cost;
                else
                    fprintf(stderr, "  settle %s: %s\n", ids[i], ce.msg);
                if (write(res[1], got, sizeof got) != (ssize_t)sizeof got)
                    _exit(4);
            }
            billing_close(cb);
            _exit(0);
        }
    }
    close(res[1]);
    close(go[0]);
    usleep(300000);
    close(go[1]);
    int64_t costs[P][N];
    for (int k = 0; k < P * N; k++) {
        int64_t got[3];
        CHECK(read(res[0], got, sizeof got) == (ssize_t)sizeof got);
        if (got[0] >= 0 && got[0] < P && got[1] >= 0 && got[1] < N)
            costs[got[0]][got[1]] = got[2];
    }
    close(res[0]);
    for (int p = 0; p < P; p++) {
        int st = 0;
        waitpid(kids[p], &st, 0);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "settler %d: status %d", p, st);
    }
    struct rows r = {0};
    struct billing_usage_row tot;
    CHECK(billing_usage_report(b, NULL, BILLING_BY_REQUEST, collect_row, &r, &tot, &e) == 0);
    CHECKF(r.n == N && tot.requests == N, "%d records", r.n);
    for (int i = 0; i < N; i++) {
        int k = find_row(&r, ids[i]);
        CHECKF(k >= 0 && r.rows[k].requests == 1, "request %s", ids[i]);
        if (k < 0)
            continue;
        /* the record is one settler's usage, and every settler got it back */
        CHECK(r.rows[k].completion_tokens % 10 == 0 && r.rows[k].completion_tokens <= 10 * P);
        for (int p = 0; p < P; p++)
            CHECKF(costs[p][i] == r.rows[k].cost, "settler %d, request %d: %lld vs %lld", p, i,
                   (long long)costs[p][i], (long long)r.rows[k].cost);
    }
    struct billing_account a;
    CHECK(billing_account_get(b, acct, &a, &e) == 0);
    CHECK(a.held == 0 && a.balance == a.credited - tot.cost);
    audit_ok(b);
    billing_close(b);
}

/* ---- recovery ---- */

/* A child process on node "holder" admits `n` requests and reports ready,
 * then waits to be killed. */
static pid_t spawn_holder(const char *key, int n)
{
    int ready[2];
    CHECK(pipe(ready) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        struct billing *b = open_node("holder", 0, 0);
        if (!b)
            _exit(2);
        for (int i = 0; i < n; i++) {
            struct err e;
            struct billing_admission a;
            struct billing_request r = {.key = key, .model = "m", .prompt_tokens = 600, .max_tokens = 400};
            if (billing_admit(b, &r, &a, &e))
                _exit(3);
        }
        if (write(ready[1], "r", 1) != 1)
            _exit(4);
        for (;;)
            pause();
    }
    close(ready[1]);
    char c = 0;
    CHECK(read(ready[0], &c, 1) == 1 && c == 'r');
    close(ready[0]);
    return pid;
}

TEST(recovery_by_any_node)
{
    NEED_PG();
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    struct billing *b = fresh("bp_recover", 100 * 1000, NULL, acct, key);
    CHECK(b != NULL);
    if (!b)
        return;
    billing_close(b);
    struct err e;
    /* another node's live process keeps its holds ... */
    pid_t holder = spawn_holder(key, 3);
    struct billing *other = open_node("other", 0, 0);
    CHECK(other != NULL);
    if (!other) {
        kill(holder, SIGKILL);
        waitpid(holder, NULL, 0);
        return;
    }
    int64_t released = -1;
    CHECKF(billing_recover(other, 0, &released, &e) == 0, "%s", e.msg);
    CHECKF(released == 0, "released %lld holds of a live process", (long long)released);
    struct billing_account a;
    CHECK(billing_account_get(other, acct, &a, &e) == 0 && a.held == 3 * 1000);
    /* ... and loses them to any node as soon as it is dead */
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
    for (int i = 0; i < 100; i++) { /* the server ends the dead session within moments */
        CHECKF(billing_recover(other, 0, &released, &e) == 0, "%s", e.msg);
        if (released)
            break;
        usleep(20000);
    }
    CHECKF(released == 3, "released %lld", (long long)released);
    CHECK(billing_account_get(other, acct, &a, &e) == 0 && a.held == 0 && a.balance == 100 * 1000);
    billing_close(other);

    /* a hold older than the timeout goes, even if its process lives on */
    holder = spawn_holder(key, 2);
    fake_now = (int64_t)time(NULL) + 120;
    struct billing *late = open_node("late", 0, 1);
    CHECK(late != NULL);
    if (late) {
        CHECKF(billing_recover(late, 300, &released, &e) == 0 && released == 0, "released %lld", (long long)released);
        CHECKF(billing_recover(late, 60, &released, &e) == 0 && released == 2, "released %lld", (long long)released);
        audit_ok(late);
        billing_close(late);
    }
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
}

/* ---- nodes killed under load ---- */

static char load_key[BILLING_KEY_LEN + 1];

struct load_ctx {
    struct billing *b;
    int fd;
    unsigned seed;
};

static void *load_thread(void *p)
{
    struct load_ctx *c = p;
    unsigned seed = c->seed;
    for (;;) {
        struct err e;
        struct billing_admission a;
        int64_t prompt = 10 + rand_r(&seed) % 300, maxt = 1 + rand_r(&seed) % 200;
        struct billing_request r = {.key = load_key, .model = "m", .prompt_tokens = prompt, .max_tokens = maxt};
        if (billing_admit(c->b, &r, &a, &e)) {
            usleep(2000);
            continue;
        }
        struct billing_usage u;
        int64_t comp = rand_r(&seed) % (maxt + 1), cached = rand_r(&seed) % (prompt + 1);
        if (billing_settle(c->b, a.request_id, prompt, cached, comp, "stop", &u, &e))
            continue;
        char line[128];
        int n = snprintf(line, sizeof line, "%s %lld\n", u.request_id, (long long)u.cost);
        if (write(c->fd, line, (size_t)n) != n)
            _exit(3);
    }
    return NULL;
}

static pid_t spawn_node(const char *node, int fd)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct billing *b = open_node(node, 1, 0);
        struct err e;
        if (!b || billing_recover(b, 0, NULL, &e))
            _exit(2);
        static struct load_ctx ctx[3];
        pthread_t th[3];
        for (int i = 0; i < 3; i++) {
            ctx[i] = (struct load_ctx){b, fd, (unsigned)getpid() * 31u + (unsigned)i};
            pthread_create(&th[i], NULL, load_thread, &ctx[i]);
        }
        for (;;)
            pause();
    }
    return pid;
}

struct seen {
    char id[BILLING_ID_MAX];
    long long cost;
};

struct match_ctx {
    struct seen *s;
    int n, matched, wrong;
};

static int match_row(void *ctx, const struct billing_usage_row *r)
{
    struct match_ctx *m = ctx;
    for (int i = 0; i < m->n; i++) {
        if (!strcmp(m->s[i].id, r->group)) {
            if (r->requests == 1 && r->cost == m->s[i].cost)
                m->matched++;
            else
                m->wrong++;
        }
    }
    return 0;
}

/* Reads what the nodes have reported so far ("ID COST" lines) into seen;
 * buf holds a partial last line between calls. The number of bytes read, 0 at
 * the end of the pipe, -1 when nothing is there yet. */
static ssize_t read_settlements(int fd, char *buf, size_t size, size_t *have, struct seen *seen, int cap, int *n_seen)
{
    ssize_t got = read(fd, buf + *have, size - 1 - *have);
    if (got <= 0)
        return got;
    *have += (size_t)got;
    buf[*have] = '\0';
    char *line = buf, *nl;
    while ((nl = strchr(line, '\n'))) {
        *nl = '\0';
        if (*n_seen < cap && sscanf(line, "%63s %lld", seen[*n_seen].id, &seen[*n_seen].cost) == 2)
            (*n_seen)++;
        line = nl + 1;
    }
    *have = strlen(line);
    memmove(buf, line, *have);
    return got;
}

TEST(nodes_killed_under_load)
{
    NEED_PG();
    char acct[BILLING_ID_MAX];
    struct billing *b = fresh("bp_kill", 60 * 1000, NULL, acct, load_key); /* small: refusals happen */
    CHECK(b != NULL);
    if (!b)
        return;
    struct err e;
    int fds[2];
    CHECK(pipe(fds) == 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    pid_t nodes[2];
    nodes[0] = spawn_node("node-a-0", fds[1]);
    nodes[1] = spawn_node("node-b-0", fds[1]);
    int cap = 1 << 15, n_seen = 0, n_credits = 0;
    struct seen *seen = calloc((size_t)cap, sizeof *seen);
    char buf[1 << 16];
    size_t have = 0;
    unsigned seed = 4242;
    for (int round = 1; round <= 4; round++) {
        /* each round runs for a random while, and on a loaded machine until
         * the nodes have settled a few requests since the last kill */
        uint64_t t0 = now_ns(), until = t0 + (uint64_t)(400 + rand_r(&seed) % 400) * 1000000;
        int seen_before = n_seen;
        while (now_ns() < until || (n_seen - seen_before < 6 && now_ns() < t0 + 30000000000ull)) {
            /* an operator tops the account up meanwhile */
            CHECKF(billing_account_credit(b, acct, 3000, "top-up", NULL, &e) == 0, "%s", e.msg);
            n_credits++;
            usleep(30000);
            read_settlements(fds[0], buf, sizeof buf, &have, seen, cap, &n_seen);
        }
        int victim = round % 2;
        kill(nodes[victim], SIGKILL);
        waitpid(nodes[victim], NULL, 0);
        char node[32];
        snprintf(node, sizeof node, "node-%c-%d", victim ? 'b' : 'a', round); /* comes back under a new name */
        nodes[victim] = spawn_node(node, fds[1]);
    }
    usleep(300000);
    for (int i = 0; i < 2; i++) {
        kill(nodes[i], SIGKILL);
        waitpid(nodes[i], NULL, 0);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, 0);
    while (read_settlements(fds[0], buf, sizeof buf, &have, seen, cap, &n_seen) > 0)
        ;
    close(fds[0]);
    CHECKF(n_seen > 20, "only %d settlements completed", n_seen);

    /* every node is dead now: any node releases what they left */
    int64_t released = 0;
    for (int i = 0; i < 100; i++) {
        int64_t r = 0;
        CHECKF(billing_recover(b, 0, &r, &e) == 0, "%s", e.msg);
        released += r;
        struct billing_account a;
        CHECK(billing_account_get(b, acct, &a, &e) == 0);
        if (a.held == 0)
            break;
        usleep(20000);
    }
    audit_ok(b);
    struct billing_account a;
    CHECK(billing_account_get(b, acct, &a, &e) == 0);
    CHECKF(a.held == 0 && a.balance >= 0, "held %lld balance %lld", (long long)a.held, (long long)a.balance);
    struct match_ctx m = {seen, n_seen, 0, 0};
    struct billing_usage_row tot;
    CHECK(billing_usage_report(b, NULL, BILLING_BY_REQUEST, match_row, &m, &tot, &e) == 0);
    CHECKF(m.matched == n_seen && m.wrong == 0, "%d of %d completed settlements found, %d wrong", m.matched, n_seen,
           m.wrong);
    CHECK(a.credited == 60 * 1000 + 3000LL * n_credits);
    CHECK(a.balance == a.credited - tot.cost);
    printf("  %d settlements seen complete across 4 kills on 2 nodes; %lld usage records; %lld holds released"
           " at the end\n",
           n_seen, (long long)tot.requests, (long long)released);
    free(seen);
    billing_close(b);
}

/* ---- settlement groups of several nodes over many accounts ----
 * Each node's writer commits settlements in groups that lock account rows in
 * arrival order, so two nodes' groups can deadlock; PostgreSQL then fails one
 * and the writer runs its settlements again. No settle call may fail. */

static char multi_keys[6][BILLING_KEY_LEN + 1];

struct multi_ctx {
    struct billing *b;
    unsigned seed;
    int settled, failed;
};

static void *multi_thread(void *p)
{
    struct multi_ctx *c = p;
    uint64_t until = now_ns() + 1500000000ull;
    while (now_ns() < until) {
        struct err e;
        struct billing_admission a;
        struct billing_request r = {.key = multi_keys[rand_r(&c->seed) % 6], .model = "m", .prompt_tokens = 50,
                                    .max_tokens = 50};
        if (billing_admit(c->b, &r, &a, &e)) {
            if (e.code != ERR_REFUSED) {
                c->failed++;
                fprintf(stderr, "  admit: %s\n", e.msg);
            }
            continue;
        }
        struct billing_usage u;
        if (billing_settle(c->b, a.request_id, 50, 0, rand_r(&c->seed) % 50, "stop", &u, &e)) {
            c->failed++;
            fprintf(stderr, "  settle: %s\n", e.msg);
        } else {
            c->settled++;
        }
    }
    return NULL;
}

TEST(group_commits_of_several_nodes)
{
    NEED_PG();
    char acct[BILLING_ID_MAX];
    struct billing *b = fresh("bp_groups", 1000 * 1000 * 1000, NULL, acct, multi_keys[0]);
    CHECK(b != NULL);
    if (!b)
        return;
    struct err e;
    for (int i = 1; i < 6; i++) {
        char id[BILLING_ID_MAX];
        CHECK(billing_account_create(b, "multi", 1000 * 1000 * 1000, id, &e) == 0);
        CHECK(billing_key_create(b, id, NULL, multi_keys[i], NULL, &e) == 0);
    }
    int res[2];
    CHECK(pipe(res) == 0);
    fflush(NULL);
    pid_t kids[3];
    for (int p = 0; p < 3; p++) {
        kids[p] = fork();
        if (kids[p] == 0) {
            char node[32];
            snprintf(node, sizeof node, "group-%d", p);
            struct billing *cb = open_node(node, 1, 0);
            if (!cb)
                _exit(2);
            struct multi_ctx ctx[6];
            pthread_t th[6];
            for (int t = 0; t < 6; t++) {
                ctx[t] = (struct multi_ctx){cb, (unsigned)(p * 100 + t), 0, 0};
                pthread_create(&th[t], NULL, multi_thread, &ctx[t]);
            }
            int out[2] = {0, 0};
            for (int t = 0; t < 6; t++) {
                pthread_join(th[t], NULL);
                out[0] += ctx[t].settled;
                out[1] += ctx[t].failed;
            }
            billing_close(cb);
            if (write(res[1], out, sizeof out) != (ssize_t)sizeof out)
                _exit(4);
            _exit(0);
        }
    }
    close(res[1]);
    int settled = 0, failed = 0;
    for (int p = 0; p < 3; p++) {
        int out[2] = {0, 0};
        CHECK(read(res[0], out, sizeof out) == (ssize_t)sizeof out);
        settled += out[0];
        failed += out[1];
        int st = 0;
        waitpid(kids[p], &st, 0);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "node %d: status %d", p, st);
    }
    close(res[0]);
    CHECKF(failed == 0, "%d admissions or settlements failed", failed);
    CHECKF(settled > 50, "only %d settled", settled);
    struct rows r = {0};
    struct billing_usage_row tot;
    CHECK(billing_usage_report(b, NULL, BILLING_BY_ACCOUNT, collect_row, &r, &tot, &e) == 0);
    CHECKF(tot.requests == settled && r.n == 6, "%lld records for %d settlements, %d accounts",
           (long long)tot.requests, settled, r.n);
    audit_ok(b);
    printf("  %d settlements by 3 nodes over 6 accounts, none failed\n", settled);
    billing_close(b);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    pg_ok = pg_test_start();
    if (pg_ok == 0) {
        snprintf(secret_path, sizeof secret_path, "%s/secret.key", pg_test_dir[0] ? pg_test_dir : "/tmp");
        int fd = open(secret_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        unsigned char s[32];
        randombytes_buf(s, sizeof s);
        if (fd < 0 || write(fd, s, sizeof s) != (ssize_t)sizeof s)
            return 1;
        close(fd);
    }
    RUN(admissions_never_overdraw);
    RUN(limits_count_across_processes);
    RUN(settle_once_across_processes);
    RUN(recovery_by_any_node);
    RUN(group_commits_of_several_nodes);
    RUN(nodes_killed_under_load);
    TEST_END();
}
