/* A small schema of the store tests' own: the store applies whatever schema
 * its caller owns, so its tests need not know the ledger's tables. */
#ifndef MAAS_STORE_TEST_H
#define MAAS_STORE_TEST_H

#include "store/store.h"

static const struct store_migration test_migrations[] = {
    {1, "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance BIGINT NOT NULL DEFAULT 0)", NULL},
    {2, "CREATE INDEX accounts_balance ON accounts(balance)", NULL},
};
static const struct store_schema test_schema = {test_migrations, 2};

#endif
