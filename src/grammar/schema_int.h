/* grammar internals shared by schema.c and regex.c. */
#ifndef MAAS_GRAMMAR_SCHEMA_INT_H
#define MAAS_GRAMMAR_SCHEMA_INT_H

#define MAX_POSITIONS 2000 /* most array positions, string length or {m,n} count a schema may spell out */

#include "core/core.h"

/* Appends to out a GBNF expression for the JSON-encoded characters of a
 * string matching pattern[0..n) (grammar.h's regex subset); jchar names the
 * rule of one JSON string character. -1 with ERR_INVALID naming the
 * construct. */
int schema_pattern(struct sbuf *out, const char *pattern, size_t n, const char *jchar, struct err *e);

#endif
