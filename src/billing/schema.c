/*
 * The ledger schema, as versioned migrations that store_open applies. Append
 * new versions at the end; never edit one that has shipped.
 *
 * Portable by construction: TEXT and BIGINT columns only, identifiers made by
 * the application (no AUTOINCREMENT / SERIAL), times as Unix seconds (UTC), the
 * usage day as a 'YYYY-MM-DD' text column so reports need no date functions.
 * Money is BIGINT micro-units. The CHECK constraints are a second line of
 * defence behind the conditional updates in billing/: an account can never hold
 * more than its balance, nor have a negative balance.
 *
 *   accounts    one row per tenant; balance = credits - settled costs,
 *               held = sum of its open holds, credited = sum of its credits.
 *   api_keys    id is the key's visible prefix; hash is the keyed BLAKE2b of
 *               the whole key (hex). models is a comma list (NULL = all).
 *   prices      per model, from effective_from on (micro-units per 1M tokens).
 *   holds       one open reservation per admitted, unsettled request, tagged
 *               with the node and boot that made it.
 *   usage       one append-only record per request (UNIQUE request_id).
 *   ledger      every balance change (credit, usage) with the balance after it;
 *               a settlement's row is named 'use_' || request_id (so it is
 *               unique per request without another index).
 *   admin_keys  hashes of admin keys for the /admin HTTP routes.
 */
#include "billing/billing_int.h"

static const char v1[] =
    "CREATE TABLE accounts ("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " balance BIGINT NOT NULL DEFAULT 0,"
    " held BIGINT NOT NULL DEFAULT 0,"
    " credited BIGINT NOT NULL DEFAULT 0,"
    " created_at BIGINT NOT NULL,"
    " CHECK (held >= 0), CHECK (balance >= held));"
    "CREATE TABLE api_keys ("
    " id TEXT PRIMARY KEY,"
    " account_id TEXT NOT NULL REFERENCES accounts(id),"
    " hash TEXT NOT NULL,"
    " models TEXT,"
    " rpm BIGINT NOT NULL DEFAULT 0,"
    " tpm BIGINT NOT NULL DEFAULT 0,"
    " budget BIGINT NOT NULL DEFAULT 0,"
    " budget_period TEXT,"
    " expires_at BIGINT,"
    " revoked_at BIGINT,"
    " created_at BIGINT NOT NULL,"
    " last_used_at BIGINT);"
    "CREATE INDEX api_keys_account ON api_keys(account_id);"
    "CREATE TABLE prices ("
    " model TEXT NOT NULL,"
    " effective_from BIGINT NOT NULL,"
    " input BIGINT NOT NULL CHECK (input >= 0),"
    " cached_input BIGINT NOT NULL CHECK (cached_input >= 0),"
    " output BIGINT NOT NULL CHECK (output >= 0),"
    " created_at BIGINT NOT NULL,"
    " PRIMARY KEY (model, effective_from));"
    "CREATE TABLE holds ("
    " request_id TEXT PRIMARY KEY,"
    " account_id TEXT NOT NULL REFERENCES accounts(id),"
    " key_id TEXT NOT NULL REFERENCES api_keys(id),"
    " model TEXT NOT NULL,"
    " prompt_tokens BIGINT NOT NULL,"
    " max_tokens BIGINT NOT NULL,"
    " price_input BIGINT NOT NULL,"
    " price_cached BIGINT NOT NULL,"
    " price_output BIGINT NOT NULL,"
    " amount BIGINT NOT NULL CHECK (amount >= 0),"
    " admitted_at BIGINT NOT NULL,"
    " node TEXT NOT NULL,"
    " boot TEXT NOT NULL);"
    "CREATE INDEX holds_key_time ON holds(key_id, admitted_at);"
    "CREATE INDEX holds_account ON holds(account_id);"
    "CREATE INDEX holds_node ON holds(node, boot);"
    "CREATE TABLE usage ("
    " request_id TEXT PRIMARY KEY,"
    " account_id TEXT NOT NULL REFERENCES accounts(id),"
    " key_id TEXT NOT NULL REFERENCES api_keys(id),"
    " model TEXT NOT NULL,"
    " prompt_tokens BIGINT NOT NULL,"
    " cached_tokens BIGINT NOT NULL,"
    " completion_tokens BIGINT NOT NULL,"
    " price_input BIGINT NOT NULL,"
    " price_cached BIGINT NOT NULL,"
    " price_output BIGINT NOT NULL,"
    " cost BIGINT NOT NULL CHECK (cost >= 0),"
    " admitted_at BIGINT NOT NULL,"
    " ended_at BIGINT NOT NULL,"
    " day TEXT NOT NULL,"
    " finish_reason TEXT NOT NULL);"
    "CREATE INDEX usage_key_time ON usage(key_id, admitted_at);"
    "CREATE INDEX usage_account_time ON usage(account_id, admitted_at);"
    "CREATE INDEX usage_time ON usage(admitted_at);"
    "CREATE TABLE ledger ("
    " id TEXT PRIMARY KEY,"
    " account_id TEXT NOT NULL REFERENCES accounts(id),"
    " kind TEXT NOT NULL,"
    " amount BIGINT NOT NULL,"
    " balance_after BIGINT NOT NULL,"
    " request_id TEXT,"
    " note TEXT,"
    " created_at BIGINT NOT NULL);"
    "CREATE INDEX ledger_account ON ledger(account_id, created_at);"
    "CREATE TABLE admin_keys ("
    " id TEXT PRIMARY KEY,"
    " hash TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " revoked_at BIGINT);";

/* v2: each account's fair-share weight for the engine's scheduler (1..1000);
 * what each request cost to compute (core-microseconds, and their cost at
 * the operator's compute price in force at admission, micro-units); the
 * operator's compute prices (micro-units per core-hour, versioned). */
static const char v2[] = "ALTER TABLE accounts ADD COLUMN weight BIGINT NOT NULL DEFAULT 1"
                         " CHECK (weight >= 1 AND weight <= 1000);"
                         "ALTER TABLE usage ADD COLUMN compute_us BIGINT NOT NULL DEFAULT 0;"
                         "ALTER TABLE usage ADD COLUMN compute_cost BIGINT NOT NULL DEFAULT 0;"
                         "CREATE TABLE compute_prices ("
                         " effective_from BIGINT PRIMARY KEY,"
                         " per_core_hour BIGINT NOT NULL CHECK (per_core_hour >= 0),"
                         " created_at BIGINT NOT NULL);";

static const struct store_migration migrations[] = {
    {1, v1, NULL},
    {2, v2, NULL},
};

const struct store_schema billing_schema = {migrations, sizeof migrations / sizeof *migrations};
