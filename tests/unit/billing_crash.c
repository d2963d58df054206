/* billing: crash safety of the ledger. A child process admits and settles
 * requests from several threads and reports each settlement it saw committed
 * through a pipe; the parent kills it with SIGKILL at a random moment, several
 * times, restarting it in between (each start releases the previous run's
 * holds, as the server will). Afterwards: every settlement the child saw
 * complete has exactly one usage record with the reported cost, balances equal
 * credits minus settled costs, and no hold is left. */
#include "billing/billing.h"
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[256];
static char key[BILLING_KEY_LEN + 1];
static int out_fd;
static struct billing *cb;

static void *child_thread(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (;;) {
        struct err e;
        struct billing_admission a;
        int64_t prompt = 10 + rand_r(&seed) % 500, maxt = 1 + rand_r(&seed) % 300;
        struct billing_request r = {.key = key, .model = "m", .prompt_tokens = prompt, .max_tokens = maxt};
        if (billing_admit(cb, &r, &a, &e))
            continue;
        struct billing_usage u;
        int64_t comp = rand_r(&seed) % (maxt + 1), cached = rand_r(&seed) % (prompt + 1);
        if (billing_settle(cb, a.request_id, prompt, cached, comp, "stop", &u, &e))
            continue;
        char line[128];
        int n = snprintf(line, sizeof line, "%s %lld\n", u.request_id, (long long)u.cost);
        if (write(out_fd, line, (size_t)n) != n)
            _exit(3);
    }
    return NULL;
}

static void child_main(int fd)
{
    struct err e;
    out_fd = fd;
    struct billing_options o = {.db = dir, .node = "crash-node", .writer = 1, .n_conn = 4};
    if (billing_open(&o, &cb, &e) || billing_recover(cb, 0, NULL, &e)) {
        fprintf(stderr, "child: %s\n", e.msg);
        _exit(2);
    }
    pthread_t th[6];
    for (int i = 0; i < 6; i++)
        pthread_create(&th[i], NULL, child_thread, (void *)(uintptr_t)(getpid() * 7 + i));
    for (;;)
        pause();
}

struct seen {
    char id[BILLING_ID_MAX];
    long long cost;
};

struct rec_ctx {
    struct seen *s;
    int n;
    int matched, wrong;
};

static int rec_row(void *ctx, const struct billing_usage_row *r)
{
    struct rec_ctx *c = ctx;
    for (int i = 0; i < c->n; i++) {
        if (!strcmp(c->s[i].id, r->group)) {
            if (r->requests == 1 && r->cost == c->s[i].cost)
                c->matched++;
            else {
                c->wrong++;
                fprintf(stderr, "  %s: reported cost %lld, ledger has %lld requests, cost %lld\n", r->group,
                        c->s[i].cost, (long long)r->requests, (long long)r->cost);
            }
        }
    }
    return 0;
}

TEST(sigkill_rounds)
{
    struct err e = {0};
    snprintf(dir, sizeof dir, "/tmp/maas-crash-test-%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    struct billing_options o = {.db = dir, .node = "crash-node"};
    struct billing *b = NULL;
    CHECKF(billing_open(&o, &b, &e) == 0, "%s", e.msg);
    if (!b)
        return;
    char acct[BILLING_ID_MAX];
    CHECK(billing_account_create(b, "crash", 2 * BILLING_MICRO, acct, &e) == 0);
    CHECK(billing_key_create(b, acct, NULL, key, NULL, &e) == 0);
    struct billing_price p = {.model = "m", .input = 2000000, .cached_input = 500000, .output = 8000000};
    CHECK(billing_price_set(b, &p, &e) == 0);
    billing_close(b);

    int cap = 1 << 16, n_seen = 0;
    struct seen *seen = calloc((size_t)cap, sizeof *seen);
    unsigned seed = 12345;
    int n_credits = 0;
    for (int round = 0; round < 5; round++) {
        int fds[2];
        CHECK(pipe(fds) == 0);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            child_main(fds[1]);
        }
        close(fds[1]);
        /* Meanwhile another process (as maas admin would) credits the
         * account: cross-process locking through the busy timeout. */
        uint64_t until = now_ns() + (uint64_t)(150000 + rand_r(&seed) % 400000) * 1000;
        struct billing *adm = NULL;
        CHECKF(billing_open(&o, &adm, &e) == 0, "%s", e.msg);
        while (adm && now_ns() < until) {
            CHECKF(billing_account_credit(adm, acct, 10000, "top-up", NULL, &e) == 0, "%s", e.msg);
            n_credits++;
            usleep(20000);
        }
        billing_close(adm);
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child ended otherwise (status %d)", st);
        FILE *f = fdopen(fds[0], "r");
        char id[BILLING_ID_MAX];
        long long cost;
        while (f && fscanf(f, "%63s %lld", id, &cost) == 2 && n_seen < cap) {
            snprintf(seen[n_seen].id, sizeof seen[n_seen].id, "%s", id);
            seen[n_seen++].cost = cost;
        }
        if (f)
            fclose(f);
    }
    CHECKF(n_seen > 20, "only %d settlements completed", n_seen);

    /* restart once more: recovery, then the checks */
    b = NULL;
    CHECKF(billing_open(&o, &b, &e) == 0, "%s", e.msg);
    int64_t released = 0;
    CHECKF(billing_recover(b, 0, &released, &e) == 0, "%s", e.msg);
    CHECKF(billing_audit(b, &e) == 0, "%s", e.msg);
    struct billing_account a;
    CHECK(billing_account_get(b, acct, &a, &e) == 0);
    CHECKF(a.held == 0 && a.balance >= 0, "held %lld balance %lld", (long long)a.held, (long long)a.balance);
    struct rec_ctx rc = {seen, n_seen, 0, 0};
    struct billing_usage_row tot;
    CHECK(billing_usage_report(b, NULL, BILLING_BY_REQUEST, rec_row, &rc, &tot, &e) == 0);
    CHECKF(rc.matched == n_seen && rc.wrong == 0, "%d of %d completed settlements found, %d wrong", rc.matched, n_seen,
           rc.wrong);
    CHECK(a.balance == a.credited - tot.cost);
    CHECK(a.credited == 2 * BILLING_MICRO + 10000LL * n_credits);
    printf("  %d settlements seen complete across 5 kills; %lld usage records; %lld holds released at the end;"
           " %d credits from another process\n",
           n_seen, (long long)tot.requests, (long long)released, n_credits);
    billing_close(b);
    free(seen);
    if (!getenv("KEEP"))
        CHECK(system(cmd) == 0);
}

/* 4 processes x 16 admissions against one balance that covers 25 of them:
 * exactly 25 admitted across the processes, the rest refused with 402. */
TEST(processes_race)
{
    struct err e = {0};
    snprintf(dir, sizeof dir, "/tmp/maas-crash-test-%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    struct billing_options o = {.db = dir, .node = "race"};
    struct billing *b = NULL;
    CHECKF(billing_open(&o, &b, &e) == 0, "%s", e.msg);
    if (!b)
        return;
    char acct[BILLING_ID_MAX];
    struct billing_price p = {.model = "m", .input = 1000000, .cached_input = 1000000, .output = 1000000};
    CHECK(billing_price_set(b, &p, &e) == 0);
    CHECK(billing_account_create(b, "race", 25 * 2000, acct, &e) == 0); /* each hold: 2000 micro */
    CHECK(billing_key_create(b, acct, NULL, key, NULL, &e) == 0);
    billing_close(b);
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pids[4];
    for (int c = 0; c < 4; c++) {
        pids[c] = fork();
        if (pids[c] == 0) {
            close(fds[0]);
            struct billing *cb2 = NULL;
            if (billing_open(&o, &cb2, &e))
                _exit(2);
            char out[17];
            int n = 0;
            for (int i = 0; i < 16; i++) {
                struct billing_admission a;
                struct billing_request r = {.key = key, .model = "m", .prompt_tokens = 1000, .max_tokens = 1000};
                int rc = billing_admit(cb2, &r, &a, &e);
                if (rc && e.code != ERR_REFUSED)
                    _exit(3);
                out[n++] = rc == 0 ? 'A' : e.reason == BILLING_INSUFFICIENT ? 'R' : 'X';
            }
            if (write(fds[1], out, (size_t)n) != n)
                _exit(4);
            billing_close(cb2);
            _exit(0);
        }
    }
    close(fds[1]);
    char buf[128];
    int got = 0, admitted = 0, refused = 0;
    ssize_t k;
    while ((k = read(fds[0], buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < k; i++, got++)
            admitted += buf[i] == 'A', refused += buf[i] == 'R';
    close(fds[0]);
    for (int c = 0; c < 4; c++) {
        int st = 0;
        waitpid(pids[c], &st, 0);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d status %d", c, st);
    }
    CHECKF(got == 64 && admitted == 25 && refused == 39, "%d answers: %d admitted, %d refused", got, admitted, refused);
    b = NULL;
    CHECK(billing_open(&o, &b, &e) == 0);
    struct billing_account a;
    CHECK(billing_account_get(b, acct, &a, &e) == 0);
    CHECK(a.held == 25 * 2000 && a.balance == 25 * 2000);
    CHECKF(billing_audit(b, &e) == 0, "%s", e.msg);
    billing_close(b);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    RUN(sigkill_rounds);
    RUN(processes_race);
    TEST_END();
}
