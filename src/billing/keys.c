/*
 * API keys and admin keys.
 *
 * A tenant key is "sk-maas-" + 12 hex (the id, shown in lists and used to find
 * the row) + "_" + 43 base64url characters (32 bytes from libsodium's CSPRNG).
 * The database keeps only BLAKE2b(key) keyed with the pepper from the data
 * directory, so a stolen database alone does not yield usable keys, and a
 * presented key is checked by recomputing the hash and comparing in constant
 * time (sodium_memcmp). Messages never contain a key.
 */
#include "billing/billing_int.h"

#include <ctype.h>
#include <sodium.h>
#include <string.h>

#define SECRET_BYTES 32
#define SECRET_B64_LEN 43
#define ADMIN_PREFIX "sk-maas-admin-"

static void key_hash_hex(const struct billing *b, const char *key, char *hex /* 65 */)
{
    unsigned char h[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)key, strlen(key), b->pepper, sizeof b->pepper);
    sodium_bin2hex(hex, 65, h, sizeof h);
}

/* Constant-time comparison of the presented key's hash with a stored hex hash. */
static int hash_matches(const struct billing *b, const char *key, const char *stored_hex)
{
    unsigned char want[32], got[32];
    size_t n = 0;
    if (!stored_hex || sodium_hex2bin(want, sizeof want, stored_hex, strlen(stored_hex), NULL, &n, NULL) != 0 ||
        n != sizeof want)
        return 0;
    crypto_generichash(got, sizeof got, (const unsigned char *)key, strlen(key), b->pepper, sizeof b->pepper);
    return sodium_memcmp(want, got, sizeof want) == 0;
}

static void random_secret(char *out /* SECRET_B64_LEN + 1 */)
{
    unsigned char raw[SECRET_BYTES];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(out, SECRET_B64_LEN + 1, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
}

/* Extracts the id from a well-formed tenant key; -1 if malformed. */
static int key_id_of(const char *key, char *id /* BILLING_ID_MAX */)
{
    size_t pl = strlen(BILLING_KEY_PREFIX);
    if (!key || strlen(key) != BILLING_KEY_LEN || strncmp(key, BILLING_KEY_PREFIX, pl) != 0)
        return -1;
    for (int i = 0; i < BILLING_KEY_ID_LEN; i++) {
        char c = key[pl + (size_t)i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -1;
    }
    if (key[pl + BILLING_KEY_ID_LEN] != '_')
        return -1;
    for (const char *p = key + pl + BILLING_KEY_ID_LEN + 1; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return -1;
    memcpy(id, key + pl, BILLING_KEY_ID_LEN);
    id[BILLING_KEY_ID_LEN] = '\0';
    return 0;
}

/* Accepts a key id or a whole key; -1 if neither. */
static int normalise_key_id(const char *s, char *id)
{
    if (key_id_of(s, id) == 0)
        return 0;
    if (!s || strlen(s) != BILLING_KEY_ID_LEN)
        return -1;
    for (int i = 0; i < BILLING_KEY_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return -1;
    memcpy(id, s, BILLING_KEY_ID_LEN + 1);
    return 0;
}

static int check_models(const char *models, struct err *e)
{
    if (!models)
        return 0;
    size_t n = strlen(models);
    if (n == 0 || n >= 1000)
        return err_set(e, ERR_INVALID, "model list must be 1 to 999 characters");
    if (models[0] == ',' || models[n - 1] == ',' || strstr(models, ",,"))
        return err_set(e, ERR_INVALID, "model list '%s': empty model name", models);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)models[i] <= ' ')
            return err_set(e, ERR_INVALID, "model list '%s': no spaces or control characters allowed", models);
    return 0;
}

#define KEY_COLS \
    "id, account_id, hash, models, rpm, tpm, budget, budget_period, expires_at, revoked_at, created_at, last_used_at"

struct key_row {
    struct billing_key k;
    char hash[80];
    int found;
};

static void fill_key(struct billing_key *k, const struct store_row *r)
{
    memset(k, 0, sizeof *k);
    snprintf(k->id, sizeof k->id, "%s", store_row_text(r, 0));
    snprintf(k->account_id, sizeof k->account_id, "%s", store_row_text(r, 1));
    if (!store_row_is_null(r, 3))
        snprintf(k->models, sizeof k->models, "%s", store_row_text(r, 3));
    k->rpm = store_row_int(r, 4);
    k->tpm = store_row_int(r, 5);
    k->budget = store_row_int(r, 6);
    k->budget_period = BILLING_PERIOD_NONE;
    if (!store_row_is_null(r, 7))
        billing_period_parse(store_row_text(r, 7), &k->budget_period, NULL);
    k->expires_at = store_row_int(r, 8);
    k->revoked_at = store_row_int(r, 9);
    k->created_at = store_row_int(r, 10);
    k->last_used_at = store_row_int(r, 11);
}

static int key_row_fn(void *ctx, const struct store_row *r)
{
    struct key_row *kr = ctx;
    fill_key(&kr->k, r);
    snprintf(kr->hash, sizeof kr->hash, "%s", store_row_text(r, 2));
    kr->found = 1;
    return 1;
}

/* A store failure while checking a key: the ledger could not be consulted,
 * which callers must tell apart from a bad key. */
static int ledger_down(struct err *e)
{
    if (e)
        e->code = ERR_UNAVAILABLE;
    return -1;
}

int billing_key_check(struct billing *b, struct store *s, const char *key, int64_t now, struct billing_key *out,
                      struct err *e)
{
    char id[BILLING_ID_MAX];
    if (key_id_of(key, id))
        return err_set(e, ERR_INVALID, "invalid API key: malformed (expected sk-maas-...)");
    struct key_row kr;
    memset(&kr, 0, sizeof kr);
    if (store_query(s, "SELECT " KEY_COLS " FROM api_keys WHERE id = $1", (struct store_val[]){SV_TEXT(id)}, 1,
                    key_row_fn, &kr, e))
        return ledger_down(e);
    /* Compare a hash even for an unknown id, so timing says nothing. */
    int ok = hash_matches(b, key, kr.found ? kr.hash
                                           : "0000000000000000000000000000000000000000000000000000000000000000");
    if (!kr.found || !ok)
        return err_set(e, ERR_NOT_FOUND, "invalid API key %s...: unknown key", id);
    if (kr.k.revoked_at)
        return err_refuse(e, BILLING_KEY_REVOKED, "invalid API key %s...: revoked", id);
    if (kr.k.expires_at && now >= kr.k.expires_at)
        return err_refuse(e, BILLING_KEY_EXPIRED, "invalid API key %s...: expired", id);
    *out = kr.k;
    return 0;
}

int billing_authenticate(struct billing *b, const char *key, struct billing_key *out, struct err *e)
{
    struct store *s = billing_conn_get(b);
    int rc = billing_key_check(b, s, key, billing_now(b), out, e);
    billing_conn_put(b, s);
    return rc;
}

int billing_key_create(struct billing *b, const char *account_id, const struct billing_key_spec *spec,
                       char *key_out, struct billing_key *info, struct err *e)
{
    static const struct billing_key_spec none = {0};
    if (!spec)
        spec = &none;
    if (check_models(spec->models, e))
        return -1;
    if (spec->rpm < 0 || spec->tpm < 0 || spec->budget < 0)
        return err_set(e, ERR_INVALID, "rpm, tpm and budget must not be negative");
    if ((spec->budget > 0) != (spec->budget_period != BILLING_PERIOD_NONE))
        return err_set(e, ERR_INVALID, "a budget needs a budget period (day, month or total) and a period needs a budget");
    char id[BILLING_ID_MAX], secret[SECRET_B64_LEN + 1], key[BILLING_KEY_LEN + 1], hash[65];
    int64_t now = billing_now(b);
    struct store *s = billing_conn_get(b);
    int rc = -1;
    for (int attempt = 0; attempt < 4 && rc; attempt++) {
        billing_random_hex(id, BILLING_KEY_ID_LEN / 2);
        random_secret(secret);
        snprintf(key, sizeof key, "%s%s_%s", BILLING_KEY_PREFIX, id, secret);
        key_hash_hex(b, key, hash);
        if (store_begin(s, STORE_TX_WRITE, e))
            break;
        int64_t exists = 0, taken = 0;
        int found = 0;
        struct store_val pa[1] = {SV_TEXT(account_id)};
        if (store_query_int(s, "SELECT COUNT(*) FROM accounts WHERE id = $1", pa, 1, &exists, NULL, e) ||
            store_query_int(s, "SELECT 1 FROM api_keys WHERE id = $1", (struct store_val[]){SV_TEXT(id)}, 1, &taken,
                            &found, e)) {
            store_rollback(s);
            break;
        }
        if (!exists) {
            store_rollback(s);
            err_set(e, ERR_NOT_FOUND, "account '%s': no such account", account_id);
            break;
        }
        if (found) { /* a 48-bit id collided: draw again */
            store_rollback(s);
            continue;
        }
        const char *period = spec->budget_period ? billing_period_name(spec->budget_period) : NULL;
        struct store_val p[10] = {SV_TEXT(id),        SV_TEXT(account_id), SV_TEXT(hash),
                                  SV_OPT_TEXT(spec->models), SV_INT(spec->rpm), SV_INT(spec->tpm),
                                  SV_INT(spec->budget), SV_OPT_TEXT(period),
                                  spec->expires_at ? SV_INT(spec->expires_at) : SV_NULL, SV_INT(now)};
        if (store_exec(s,
                       "INSERT INTO api_keys (id, account_id, hash, models, rpm, tpm, budget, budget_period,"
                       " expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                       p, 10, NULL, e) ||
            store_commit(s, e)) {
            store_rollback(s);
            break;
        }
        rc = 0;
    }
    billing_conn_put(b, s);
    if (rc == 0) {
        memcpy(key_out, key, sizeof key);
        if (info) {
            memset(info, 0, sizeof *info);
            snprintf(info->id, sizeof info->id, "%s", id);
            snprintf(info->account_id, sizeof info->account_id, "%s", account_id);
            if (spec->models)
                snprintf(info->models, sizeof info->models, "%s", spec->models);
            info->rpm = spec->rpm;
            info->tpm = spec->tpm;
            info->budget = spec->budget;
            info->budget_period = spec->budget_period;
            info->expires_at = spec->expires_at;
            info->created_at = now;
        }
    }
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(key, sizeof key);
    return rc;
}

int billing_key_revoke(struct billing *b, const char *key_id, struct err *e)
{
    char id[BILLING_ID_MAX];
    if (normalise_key_id(key_id, id))
        return err_set(e, ERR_INVALID, "key id '%.40s': expected 12 hex characters (or the whole key)", key_id ? key_id : "");
    struct store *s = billing_conn_get(b);
    int64_t changes = 0;
    int rc = store_exec(s, "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
                        (struct store_val[]){SV_INT(billing_now(b)), SV_TEXT(id)}, 2, &changes, e);
    billing_conn_put(b, s);
    if (rc)
        return -1;
    if (changes == 0)
        return err_set(e, ERR_NOT_FOUND, "key '%s': no such key", id);
    return 0;
}

struct key_list_ctx {
    billing_key_fn fn;
    void *ctx;
};

static int key_list_row(void *ctx, const struct store_row *r)
{
    struct key_list_ctx *l = ctx;
    struct billing_key k;
    fill_key(&k, r);
    return l->fn(l->ctx, &k);
}

int billing_key_list(struct billing *b, const char *account_id, billing_key_fn fn, void *ctx, struct err *e)
{
    struct key_list_ctx l = {fn, ctx};
    struct store *s = billing_conn_get(b);
    int rc = 0;
    if (account_id) {
        int64_t n = 0;
        rc = store_query_int(s, "SELECT COUNT(*) FROM accounts WHERE id = $1",
                             (struct store_val[]){SV_TEXT(account_id)}, 1, &n, NULL, e);
        if (rc == 0 && n == 0)
            rc = err_set(e, ERR_NOT_FOUND, "account '%s': no such account", account_id);
        if (rc == 0)
            rc = store_query(s, "SELECT " KEY_COLS " FROM api_keys WHERE account_id = $1 ORDER BY created_at, id",
                             (struct store_val[]){SV_TEXT(account_id)}, 1, key_list_row, &l, e);
    } else {
        rc = store_query(s, "SELECT " KEY_COLS " FROM api_keys ORDER BY account_id, created_at, id", NULL, 0,
                         key_list_row, &l, e);
    }
    billing_conn_put(b, s);
    return rc;
}

/* ---- admin keys ---- */

int billing_admin_key_create(struct billing *b, char *key_out, size_t n, struct err *e)
{
    char secret[SECRET_B64_LEN + 1], key[128], hash[65], id[24] = "adm_";
    if (n < strlen(ADMIN_PREFIX) + SECRET_B64_LEN + 1)
        return err_set(e, ERR_INVALID, "admin key buffer too small");
    random_secret(secret);
    snprintf(key, sizeof key, "%s%s", ADMIN_PREFIX, secret);
    key_hash_hex(b, key, hash);
    billing_random_hex(id + 4, 8);
    struct store *s = billing_conn_get(b);
    int rc = store_exec(s, "INSERT INTO admin_keys (id, hash, created_at) VALUES ($1, $2, $3)",
                        (struct store_val[]){SV_TEXT(id), SV_TEXT(hash), SV_INT(billing_now(b))}, 3, NULL, e);
    billing_conn_put(b, s);
    if (rc == 0)
        snprintf(key_out, n, "%s", key);
    sodium_memzero(key, sizeof key);
    sodium_memzero(secret, sizeof secret);
    return rc;
}

int billing_admin_key_missing(struct billing *b, int *missing, struct err *e)
{
    int64_t n = 0;
    struct store *s = billing_conn_get(b);
    int rc = store_query_int(s, "SELECT COUNT(*) FROM admin_keys WHERE revoked_at IS NULL", NULL, 0, &n, NULL, e);
    billing_conn_put(b, s);
    if (rc == 0)
        *missing = n == 0;
    return rc;
}

struct admin_match {
    const struct billing *b;
    const char *key;
    int ok;
};

static int admin_row(void *ctx, const struct store_row *r)
{
    struct admin_match *m = ctx;
    /* Check every row (no early exit) so that timing does not depend on which matched. */
    m->ok |= hash_matches(m->b, m->key, store_row_text(r, 0));
    return 0;
}

static int admin_key_shape(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (n < 24 || n > 256)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] <= ' ' || (unsigned char)key[i] >= 0x7f)
            return 0;
    return 1;
}

int billing_admin_key_import(struct billing *b, const char *key, struct err *e)
{
    if (!admin_key_shape(key))
        return err_set(e, ERR_INVALID, "admin key must be 24 to 256 printable characters without spaces");
    char hash[65], id[24] = "adm_";
    key_hash_hex(b, key, hash);
    billing_random_hex(id + 4, 8);
    struct store *s = billing_conn_get(b);
    int64_t n = 0;
    int rc = store_query_int(s, "SELECT COUNT(*) FROM admin_keys WHERE hash = $1 AND revoked_at IS NULL",
                             (struct store_val[]){SV_TEXT(hash)}, 1, &n, NULL, e);
    if (rc == 0 && n == 0)
        rc = store_exec(s, "INSERT INTO admin_keys (id, hash, created_at) VALUES ($1, $2, $3)",
                        (struct store_val[]){SV_TEXT(id), SV_TEXT(hash), SV_INT(billing_now(b))}, 3, NULL, e);
    billing_conn_put(b, s);
    return rc;
}

int billing_admin_key_verify(struct billing *b, const char *key, struct err *e)
{
    if (!admin_key_shape(key))
        return err_set(e, ERR_INVALID, "invalid admin key");
    struct admin_match m = {b, key, 0};
    struct store *s = billing_conn_get(b);
    int rc = store_query(s, "SELECT hash FROM admin_keys WHERE revoked_at IS NULL", NULL, 0, admin_row, &m, e);
    billing_conn_put(b, s);
    if (rc)
        return ledger_down(e);
    if (!m.ok)
        return err_set(e, ERR_NOT_FOUND, "invalid admin key");
    return 0;
}
