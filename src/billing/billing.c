/*
 * billing — the handle (connection pool, pepper, clock, hold tag), accounts,
 * prices and the audit of the ledger's invariants.
 *
 * Every write is one short write transaction on a pooled connection. The
 * pepper (32 random bytes that key the API-key hashes) lives in a file of mode
 * 0600 beside the ledger; it is created atomically (temp file + link) so that
 * two processes opening a fresh data directory agree on one.
 */
#include "billing/billing_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void billing_random_hex(char *out, size_t n_bytes)
{
    unsigned char buf[64];
    MAAS_ASSERT(n_bytes <= sizeof buf);
    randombytes_buf(buf, n_bytes);
    sodium_bin2hex(out, n_bytes * 2 + 1, buf, n_bytes);
}

void billing_row_read(const struct store_row *r, const struct billing_col *cols, int n, void *out)
{
    for (int i = 0; i < n; i++) {
        char *field = (char *)out + cols[i].off;
        if (cols[i].text_size) {
            const char *t = store_row_text(r, i);
            snprintf(field, cols[i].text_size, "%s", t ? t : "");
        } else {
            int64_t v = store_row_int(r, i);
            memcpy(field, &v, sizeof v);
        }
    }
}

int64_t billing_now(struct billing *b)
{
    return b->now ? b->now(b->now_ctx) : (int64_t)time(NULL);
}

static int read_pepper(const char *path, unsigned char *pepper, struct err *e)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) != 0) {
        err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (st.st_mode & 077) {
        err_set(e, ERR_INVALID, "%s: readable by others (mode %03o); run chmod 600 on it", path, (unsigned)(st.st_mode & 0777));
        goto out;
    }
    if (st.st_size != 32 || read(fd, pepper, 32) != 32) {
        err_set(e, ERR_INVALID, "%s: expected exactly 32 bytes of secret", path);
        goto out;
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

static int load_pepper(const char *path, unsigned char *pepper, struct err *e)
{
    if (access(path, F_OK) == 0)
        return read_pepper(path, pepper, e);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return err_set(e, ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    randombytes_buf(pepper, 32);
    int ok = write(fd, pepper, 32) == 32 && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        unlink(tmp);
        return err_set(e, ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    }
    if (link(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        if (saved == EEXIST) /* another process won the race: use its secret */
            return read_pepper(path, pepper, e);
        return err_set(e, ERR_IO, "%s: cannot create: %s", path, strerror(saved));
    }
    unlink(tmp);
    return 0;
}

/* Liveness of the processes sharing this data directory: each holds an
 * exclusive flock on boots/<boot>.lock for as long as it lives (the kernel
 * drops it when the process dies, however it dies), so recovery can tell a
 * dead process's holds from those of a live neighbour on the same node. */
static int boot_lock(struct billing *b, struct err *e)
{
    snprintf(b->boots_dir, sizeof b->boots_dir, "%s/boots", b->data_dir);
    if (mkdir(b->boots_dir, 0700) != 0 && errno != EEXIST)
        return err_set(e, ERR_IO, "%s: cannot create: %s", b->boots_dir, strerror(errno));
    char path[1300];
    snprintf(path, sizeof path, "%s/%s.lock", b->boots_dir, b->boot);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set(e, ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return err_set(e, ERR_IO, "%s: cannot lock: %s", path, strerror(errno));
    }
    b->boot_fd = fd;
    return 0;
}

int billing_boot_dead(struct billing *b, const char *boot)
{
    if (!strcmp(boot, b->boot))
        return 0;
    for (const char *p = boot; *p; p++) /* boots are "<pid>-<time>-<hex>" */
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || *p == '-'))
            return 1;
    char path[1300];
    snprintf(path, sizeof path, "%s/%s.lock", b->boots_dir, boot);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    int dead = flock(fd, LOCK_EX | LOCK_NB) == 0;
    if (dead)
        unlink(path);
    close(fd);
    return dead;
}

void billing_boot_sweep(struct billing *b)
{
    if (!b->boots_dir[0])
        return;
    DIR *d = opendir(b->boots_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || n >= 96 + 5 || strcmp(de->d_name + n - 5, ".lock"))
            continue;
        char boot[96];
        memcpy(boot, de->d_name, n - 5);
        boot[n - 5] = '\0';
        billing_boot_dead(b, boot);
    }
    closedir(d);
}

int billing_open(const struct billing_options *o, struct billing **out, struct err *e)
{
    if (sodium_init() < 0)
        return err_set(e, ERR_INVALID, "libsodium: initialisation failed");
    if (!o->db || !*o->db)
        return err_set(e, ERR_INVALID, "billing: no data directory or database given");
    struct billing *b = calloc(1, sizeof *b);
    if (!b)
        return err_set(e, ERR_NOMEM, "billing: out of memory");
    pthread_mutex_init(&b->pool_mu, NULL);
    pthread_cond_init(&b->pool_cv, NULL);
    pthread_mutex_init(&b->q_mu, NULL);
    pthread_cond_init(&b->q_cv, NULL);
    pthread_cond_init(&b->q_space_cv, NULL);
    b->now = o->now;
    b->now_ctx = o->now_ctx;
    b->q_cap = o->queue_cap > 0 ? o->queue_cap : 4096;
    b->group_max = o->group_max > 0 ? o->group_max : 256;
    b->lease_check_ms = o->lease_check_ms > 0 ? o->lease_check_ms : 500;
    b->lease_grace_ms = o->lease_grace_ms > 0 ? o->lease_grace_ms : 5000;

    /* The data directory: the db argument itself, or the folder of sqlite:PATH.
     * A shared database (PostgreSQL) has none. */
    b->shared = !strncmp(o->db, "postgresql://", 13) || !strncmp(o->db, "postgres://", 11);
    if (b->shared) {
        b->data_dir[0] = '\0';
    } else if (!strncmp(o->db, "sqlite:", 7)) {
        snprintf(b->data_dir, sizeof b->data_dir, "%s", o->db + 7);
        char *slash = strrchr(b->data_dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(b->data_dir, sizeof b->data_dir, ".");
    } else {
        snprintf(b->data_dir, sizeof b->data_dir, "%s", o->db);
    }

    char host[100] = "localhost";
    if (o->node && *o->node)
        snprintf(b->node, sizeof b->node, "%s", o->node);
    else if (gethostname(host, sizeof host - 1) == 0)
        snprintf(b->node, sizeof b->node, "%s", host);
    else
        snprintf(b->node, sizeof b->node, "localhost");
    char rnd[17];
    billing_random_hex(rnd, 8);
    snprintf(b->boot, sizeof b->boot, "%d-%lld-%s", (int)getpid(), (long long)time(NULL), rnd);
    b->boot_fd = -1;

    b->n_conn = o->n_conn > 0 ? o->n_conn : 4;
    b->conns = calloc((size_t)b->n_conn, sizeof *b->conns);
    b->busy = calloc((size_t)b->n_conn, sizeof *b->busy);
    if (!b->conns || !b->busy) {
        err_set(e, ERR_NOMEM, "billing: out of memory");
        goto fail;
    }
    /* The first open applies migrations; the others find them done. On a
     * shared database every connection keeps this process's lease (lease.c),
     * so that each hold is placed by a session that holds it. */
    for (int i = 0; i < b->n_conn; i++)
        if (store_open(o->db, &billing_schema, &b->conns[i], e) || (b->shared && billing_lease_keep(b, b->conns[i], e)))
            goto fail;

    char pepper_path[1100];
    if (o->secret_file && *o->secret_file)
        snprintf(pepper_path, sizeof pepper_path, "%s", o->secret_file);
    else if (b->shared) {
        err_set(e, ERR_INVALID, "billing: a shared database needs a secret file (the same on every node)");
        goto fail;
    } else
        snprintf(pepper_path, sizeof pepper_path, "%s/secret.key", b->data_dir);
    if (load_pepper(pepper_path, b->pepper, e))
        goto fail;
    if (b->shared ? billing_lease_start(b, o->db, e) : boot_lock(b, e))
        goto fail;

    if (o->writer) {
        if (store_open(o->db, &billing_schema, &b->wconn, e) || (b->shared && billing_lease_keep(b, b->wconn, e)))
            goto fail;
        if (billing_writer_start(b, e))
            goto fail;
    }
    *out = b;
    return 0;
fail:
    billing_close(b);
    return -1;
}

void billing_close(struct billing *b)
{
    if (!b)
        return;
    billing_writer_stop(b);
    if (b->boot_fd >= 0) {
        char path[1300];
        snprintf(path, sizeof path, "%s/%s.lock", b->boots_dir, b->boot);
        unlink(path);
        close(b->boot_fd);
    }
    billing_lease_stop(b);
    store_close(b->wconn);
    for (int i = 0; b->conns && i < b->n_conn; i++)
        store_close(b->conns[i]);
    free(b->conns);
    free(b->busy);
    sodium_memzero(b->pepper, sizeof b->pepper);
    pthread_mutex_destroy(&b->pool_mu);
    pthread_cond_destroy(&b->pool_cv);
    pthread_mutex_destroy(&b->q_mu);
    pthread_cond_destroy(&b->q_cv);
    pthread_cond_destroy(&b->q_space_cv);
    free(b);
}

struct store *billing_conn_get(struct billing *b)
{
    pthread_mutex_lock(&b->pool_mu);
    for (;;) {
        for (int i = 0; i < b->n_conn; i++) {
            if (!b->busy[i]) {
                b->busy[i] = 1;
                pthread_mutex_unlock(&b->pool_mu);
                return b->conns[i];
            }
        }
        pthread_cond_wait(&b->pool_cv, &b->pool_mu);
    }
}

void billing_conn_put(struct billing *b, struct store *s)
{
    pthread_mutex_lock(&b->pool_mu);
    for (int i = 0; i < b->n_conn; i++)
        if (b->conns[i] == s)
            b->busy[i] = 0;
    pthread_cond_signal(&b->pool_cv);
    pthread_mutex_unlock(&b->pool_mu);
}

void billing_fail_after(struct billing *b, long n)
{
    for (int i = 0; i < b->n_conn; i++)
        store_fail_after(b->conns[i], n);
    if (b->wconn)
        store_fail_after(b->wconn, n);
}

/* ---- periods ---- */

int64_t billing_period_start(enum billing_period p, int64_t t)
{
    if (p == BILLING_PERIOD_DAY)
        return t - ((t % 86400) + 86400) % 86400;
    if (p == BILLING_PERIOD_MONTH) {
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        struct tm s = {.tm_year = tm.tm_year, .tm_mon = tm.tm_mon, .tm_mday = 1};
        return (int64_t)timegm(&s);
    }
    return INT64_MIN;
}

int64_t billing_period_end(enum billing_period p, int64_t t)
{
    if (p == BILLING_PERIOD_DAY)
        return billing_period_start(p, t) + 86400;
    if (p == BILLING_PERIOD_MONTH) {
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        struct tm s = {.tm_year = tm.tm_year + (tm.tm_mon == 11), .tm_mon = (tm.tm_mon + 1) % 12, .tm_mday = 1};
        return (int64_t)timegm(&s);
    }
    return INT64_MAX;
}

const char *billing_period_name(enum billing_period p)
{
    switch (p) {
    case BILLING_PERIOD_DAY:
        return "day";
    case BILLING_PERIOD_MONTH:
        return "month";
    case BILLING_PERIOD_TOTAL:
        return "total";
    default:
        return "";
    }
}

int billing_period_parse(const char *s, enum billing_period *out, struct err *e)
{
    if (s && !strcmp(s, "day"))
        *out = BILLING_PERIOD_DAY;
    else if (s && !strcmp(s, "month"))
        *out = BILLING_PERIOD_MONTH;
    else if (s && !strcmp(s, "total"))
        *out = BILLING_PERIOD_TOTAL;
    else
        return err_set(e, ERR_INVALID, "budget period '%s': expected day, month or total", s ? s : "");
    return 0;
}

/* ---- accounts ---- */

static int write_ledger(struct store *s, const char *account_id, const char *kind, int64_t amount,
                        int64_t balance_after, const char *request_id, const char *note, int64_t now,
                        struct err *e)
{
    /* A settlement's row is named after its request (unique anyway); a
     * credit gets a random name. */
    char id[BILLING_ID_MAX + 8];
    if (request_id) {
        snprintf(id, sizeof id, "use_%s", request_id);
    } else {
        memcpy(id, "led_", 4);
        billing_random_hex(id + 4, 12);
    }
    struct store_val p[8] = {SV_TEXT(id),         SV_TEXT(account_id), SV_TEXT(kind),   SV_INT(amount),
                             SV_INT(balance_after), SV_OPT_TEXT(request_id), SV_OPT_TEXT(note), SV_INT(now)};
    return store_exec(s,
                      "INSERT INTO ledger (id, account_id, kind, amount, balance_after, request_id, note, created_at)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                      p, 8, NULL, e);
}

int billing_ledger_row(struct store *s, const char *account_id, const char *kind, int64_t amount,
                       int64_t balance_after, const char *request_id, int64_t now, struct err *e)
{
    return write_ledger(s, account_id, kind, amount, balance_after, request_id, NULL, now, e);
}

static int check_name(const char *name, struct err *e)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 200)
        return err_set(e, ERR_INVALID, "account name must be 1 to 200 characters");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return err_set(e, ERR_INVALID, "account name must not contain control characters");
    return 0;
}

static int credit_in_tx(struct billing *b, struct store *s, const char *id, int64_t amount, const char *note,
                        int64_t now, struct err *e);

/* The end of a write on a pooled connection: rolls back unless rc is 0 (it
 * committed), gives the connection back and returns rc. */
static int write_done(struct billing *b, struct store *s, int rc)
{
    if (rc)
        store_rollback(s);
    billing_conn_put(b, s);
    return rc;
}

int billing_account_create(struct billing *b, const char *name, int64_t credit, char *id_out, struct err *e)
{
    if (check_name(name, e))
        return -1;
    if (credit < 0)
        return err_set(e, ERR_INVALID, "initial credit must not be negative");
    char id[BILLING_ID_MAX] = "acct_";
    billing_random_hex(id + 5, 8);
    int64_t now = billing_now(b);
    struct store *s = billing_conn_get(b);
    struct store_val p[3] = {SV_TEXT(id), SV_TEXT(name), SV_INT(now)};
    int rc = store_begin(s, STORE_TX_WRITE, e) ||
                     store_exec(s,
                                "INSERT INTO accounts (id, name, balance, held, credited, created_at)"
                                " VALUES ($1, $2, 0, 0, 0, $3)",
                                p, 3, NULL, e) ||
                     (credit > 0 && credit_in_tx(b, s, id, credit, "initial credit", now, e)) || store_commit(s, e)
                 ? -1
                 : 0;
    if (rc == 0)
        snprintf(id_out, BILLING_ID_MAX, "%s", id);
    return write_done(b, s, rc);
}

static int credit_in_tx(struct billing *b, struct store *s, const char *id, int64_t amount, const char *note,
                        int64_t now, struct err *e)
{
    int64_t balance = 0;
    int found = 0;
    struct store_val p[2] = {SV_INT(amount), SV_TEXT(id)};
    /* Overflow guard in SQL: balance + amount must stay below 2^63. */
    if (store_query_int(s,
                        "UPDATE accounts SET balance = balance + $1, credited = credited + $1"
                        " WHERE id = $2 AND balance <= 9223372036854775807 - $1 RETURNING balance",
                        p, 2, &balance, &found, e))
        return -1;
    if (!found)
        return err_set(e, ERR_NOT_FOUND, "account '%s': no such account (or the credit would overflow)", id);
    return write_ledger(s, id, "credit", amount, balance, NULL, note, now, e);
}

#define A_TEXT(f) BILLING_COL_TEXT(struct billing_account, f)
#define A_INT(f) BILLING_COL_INT(struct billing_account, f)
static const struct billing_col account_cols[] = {
    A_TEXT(id), A_TEXT(name), A_INT(balance), A_INT(held), A_INT(credited), A_INT(created_at), A_INT(n_keys),
    A_INT(weight),
};

/* Reads one account (ACCOUNT_COLS) into ctx and stops. */
static int account_row(void *ctx, const struct store_row *r)
{
    billing_row_read(r, account_cols, sizeof account_cols / sizeof *account_cols, ctx);
    return 1;
}

#define ACCOUNT_COLS \
    "a.id, a.name, a.balance, a.held, a.credited, a.created_at," \
    " (SELECT COUNT(*) FROM api_keys k WHERE k.account_id = a.id), a.weight"

int billing_account_get(struct billing *b, const char *id, struct billing_account *out, struct err *e)
{
    struct billing_account a;
    memset(&a, 0, sizeof a);
    struct store *s = billing_conn_get(b);
    int rc = store_query(s, "SELECT " ACCOUNT_COLS " FROM accounts a WHERE a.id = $1",
                         (struct store_val[]){SV_TEXT(id)}, 1, account_row, &a, e);
    billing_conn_put(b, s);
    if (rc)
        return -1;
    if (!a.id[0])
        return err_set(e, ERR_NOT_FOUND, "account '%s': no such account", id);
    *out = a;
    return 0;
}

int billing_account_set_weight(struct billing *b, const char *id, int64_t weight, struct err *e)
{
    if (weight < 1 || weight > 1000)
        return err_set(e, ERR_INVALID, "weight %lld: must be an integer from 1 to 1000", (long long)weight);
    struct store *s = billing_conn_get(b);
    int64_t changed = 0;
    int rc = store_begin(s, STORE_TX_WRITE, e) ||
                     store_exec(s, "UPDATE accounts SET weight = $1 WHERE id = $2",
                                (struct store_val[]){SV_INT(weight), SV_TEXT(id)}, 2, &changed, e) ||
                     store_commit(s, e)
                 ? -1
                 : 0;
    if (write_done(b, s, rc))
        return -1;
    if (changed == 0)
        return err_set(e, ERR_NOT_FOUND, "account '%s': no such account", id);
    return 0;
}

int billing_account_credit(struct billing *b, const char *id, int64_t amount, const char *note,
                           struct billing_account *after, struct err *e)
{
    if (amount <= 0)
        return err_set(e, ERR_INVALID, "credit amount must be positive");
    struct store *s = billing_conn_get(b);
    int rc = store_begin(s, STORE_TX_WRITE, e) || credit_in_tx(b, s, id, amount, note, billing_now(b), e) ||
                     store_commit(s, e)
                 ? -1
                 : 0;
    if (write_done(b, s, rc) == 0 && after)
        return billing_account_get(b, id, after, e);
    return rc;
}

/* A listing of accounts or prices: each row, read as its kind, goes to the
 * caller's callback of that kind (exactly one of account, price is set). */
struct list_ctx {
    billing_account_fn account;
    billing_price_fn price;
    void *ctx;
};

static int price_row(void *ctx, const struct store_row *r);

static int list_row(void *ctx, const struct store_row *r)
{
    struct list_ctx *l = ctx;
    if (l->account) {
        struct billing_account a;
        memset(&a, 0, sizeof a);
        account_row(&a, r);
        return l->account(l->ctx, &a);
    }
    struct billing_price p;
    memset(&p, 0, sizeof p);
    price_row(&p, r);
    return l->price(l->ctx, &p);
}

/* Runs a listing query on a pooled connection. */
static int list(struct billing *b, const char *sql, struct list_ctx *l, struct err *e)
{
    struct store *s = billing_conn_get(b);
    int rc = store_query(s, sql, NULL, 0, list_row, l, e);
    billing_conn_put(b, s);
    return rc;
}

int billing_account_list(struct billing *b, billing_account_fn fn, void *ctx, struct err *e)
{
    struct list_ctx l = {.account = fn, .ctx = ctx};
    return list(b, "SELECT " ACCOUNT_COLS " FROM accounts a ORDER BY a.created_at, a.id", &l, e);
}

/* ---- prices ---- */

int billing_price_set(struct billing *b, const struct billing_price *p, struct err *e)
{
    size_t n = strlen(p->model);
    if (n == 0 || n >= BILLING_MODEL_MAX)
        return err_set(e, ERR_INVALID, "model name must be 1 to %d characters", BILLING_MODEL_MAX - 1);
    if (p->input < 0 || p->cached_input < 0 || p->output < 0)
        return err_set(e, ERR_INVALID, "prices must not be negative");
    struct store *s = billing_conn_get(b);
    struct store_val v[6] = {SV_TEXT(p->model), SV_INT(p->effective_from), SV_INT(p->input),
                             SV_INT(p->cached_input), SV_INT(p->output), SV_INT(billing_now(b))};
    int rc = store_begin(s, STORE_TX_WRITE, e) ||
                     store_exec(s, "DELETE FROM prices WHERE model = $1 AND effective_from = $2", v, 2, NULL, e) ||
                     store_exec(s,
                                "INSERT INTO prices (model, effective_from, input, cached_input, output, created_at)"
                                " VALUES ($1, $2, $3, $4, $5, $6)",
                                v, 6, NULL, e) ||
                     store_commit(s, e)
                 ? -1
                 : 0;
    return write_done(b, s, rc);
}

int64_t billing_compute_cost(int64_t compute_us, int64_t per_core_hour)
{
    if (compute_us <= 0 || per_core_hour <= 0)
        return 0;
    /* 2^50 us x 2^63 does not fit 64 bits: exact in 128, rounded half up */
    __int128 v = (__int128)compute_us * per_core_hour + 1800000000;
    v /= 3600000000;
    return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

int billing_compute_price_set(struct billing *b, int64_t per_core_hour, int64_t effective_from, struct err *e)
{
    if (per_core_hour < 0)
        return err_set(e, ERR_INVALID, "compute price must not be negative");
    if (effective_from < 0)
        return err_set(e, ERR_INVALID, "compute price: time must not be negative");
    struct store *s = billing_conn_get(b);
    struct store_val v[3] = {SV_INT(effective_from), SV_INT(per_core_hour), SV_INT(billing_now(b))};
    int rc = store_begin(s, STORE_TX_WRITE, e) ||
                     store_exec(s, "DELETE FROM compute_prices WHERE effective_from = $1", v, 1, NULL, e) ||
                     store_exec(s,
                                "INSERT INTO compute_prices (effective_from, per_core_hour, created_at)"
                                " VALUES ($1, $2, $3)",
                                v, 3, NULL, e) ||
                     store_commit(s, e)
                 ? -1
                 : 0;
    return write_done(b, s, rc);
}

#define P_TEXT(f) BILLING_COL_TEXT(struct billing_price, f)
#define P_INT(f) BILLING_COL_INT(struct billing_price, f)
static const struct billing_col price_cols[] = {
    P_TEXT(model), P_INT(effective_from), P_INT(input), P_INT(cached_input), P_INT(output),
};
#define PRICE_COLS "model, effective_from, input, cached_input, output"

/* Reads one price (PRICE_COLS) into ctx and stops. */
static int price_row(void *ctx, const struct store_row *r)
{
    billing_row_read(r, price_cols, sizeof price_cols / sizeof *price_cols, ctx);
    return 1;
}

int billing_price_list(struct billing *b, billing_price_fn fn, void *ctx, struct err *e)
{
    struct list_ctx l = {.price = fn, .ctx = ctx};
    return list(b, "SELECT " PRICE_COLS " FROM prices ORDER BY model, effective_from", &l, e);
}

int billing_price_lookup(struct store *s, const char *model, int64_t t, struct billing_price *out, int *found,
                         struct err *e)
{
    struct billing_price p;
    memset(&p, 0, sizeof p);
    p.effective_from = -1;
    if (store_query(s,
                    "SELECT " PRICE_COLS " FROM prices"
                    " WHERE model = $1 AND effective_from <= $2 ORDER BY effective_from DESC LIMIT 1",
                    (struct store_val[]){SV_TEXT(model), SV_INT(t)}, 2, price_row, &p, e))
        return -1;
    *found = p.model[0] != '\0';
    if (*found)
        *out = p;
    return 0;
}

/* ---- audit ---- */

struct audit_ctx {
    struct err *e;
    int bad;
};

static int audit_row(void *ctx, const struct store_row *r)
{
    struct audit_ctx *a = ctx;
    const char *id = store_row_text(r, 0);
    int64_t balance = store_row_int(r, 1), held = store_row_int(r, 2), credited = store_row_int(r, 3);
    int64_t ledger_sum = store_row_int(r, 4), credit_sum = store_row_int(r, 5), hold_sum = store_row_int(r, 6);
    int64_t cost_sum = store_row_int(r, 7);
    const char *why = NULL;
    if (balance != ledger_sum)
        why = "balance differs from the sum of its ledger rows";
    else if (credited != credit_sum)
        why = "credited differs from the sum of its credits";
    else if (balance != credited - cost_sum)
        why = "balance differs from credits minus settled costs";
    else if (held != hold_sum)
        why = "held differs from the sum of its open holds";
    else if (held < 0 || held > balance)
        why = "held is outside 0..balance";
    if (why) {
        err_set(a->e, ERR_INVALID,
                "audit: account %s: %s (balance %lld, held %lld, credited %lld; ledger %lld, credits %lld, holds %lld,"
                " costs %lld)",
                id, why, (long long)balance, (long long)held, (long long)credited, (long long)ledger_sum,
                (long long)credit_sum, (long long)hold_sum, (long long)cost_sum);
        a->bad = 1;
        return 1;
    }
    return 0;
}

int billing_audit(struct billing *b, struct err *e)
{
    struct audit_ctx a = {e, 0};
    struct store *s = billing_conn_get(b);
    int rc = -1;
    if (store_begin(s, STORE_TX_READ, e))
        goto out;
    if (store_query(s,
                    "SELECT a.id, a.balance, a.held, a.credited,"
                    " (SELECT COALESCE(SUM(l.amount), 0) FROM ledger l WHERE l.account_id = a.id),"
                    " (SELECT COALESCE(SUM(l.amount), 0) FROM ledger l WHERE l.account_id = a.id AND l.kind = 'credit'),"
                    " (SELECT COALESCE(SUM(h.amount), 0) FROM holds h WHERE h.account_id = a.id),"
                    " (SELECT COALESCE(SUM(u.cost), 0) FROM usage u WHERE u.account_id = a.id)"
                    " FROM accounts a ORDER BY a.id",
                    NULL, 0, audit_row, &a, e))
        goto out;
    if (a.bad)
        goto out;
    int64_t orphans = 0;
    if (store_query_int(s,
                        "SELECT COUNT(*) FROM usage u WHERE NOT EXISTS"
                        " (SELECT 1 FROM ledger l WHERE l.id = 'use_' || u.request_id AND l.amount = -u.cost)",
                        NULL, 0, &orphans, NULL, e))
        goto out;
    if (orphans) {
        err_set(e, ERR_INVALID, "audit: %lld usage records without their ledger row", (long long)orphans);
        goto out;
    }
    rc = 0;
out:
    store_rollback(s);
    billing_conn_put(b, s);
    return rc;
}
