/*
 * template — a Jinja2 engine for chat templates.
 *
 * Renders a model's tokenizer.chat_template as Python Jinja2 does when
 * Hugging Face transformers renders it: an immutable sandbox with
 * trim_blocks, lstrip_blocks, loop controls (break/continue), the
 * {% generation %} tag, `tojson` without HTML escaping, and the globals
 * raise_exception, strftime_now, range, namespace and dict.
 *
 *   struct err e;
 *   struct tmpl *t = tmpl_parse(src, strlen(src), &e);
 *   char *out = tmpl_render(t, "{\"messages\": [...], \"bos_token\": \"<s>\"}", n, NULL, &len, &e);
 *   free(out); tmpl_free(t);
 *
 * Values: none, bool, int, float, string, list, dict (insertion ordered),
 * macro, namespace; undefined names behave as Jinja2's default Undefined
 * (print as "", false, iterate as empty; an attribute of one is an error).
 * Limits: a render fails cleanly (ERR_EXHAUSTED, naming the template line)
 * when it exceeds the output size, the number of evaluation steps or the
 * call depth of struct tmpl_opts, so a hostile template cannot hang or
 * exhaust memory. Every error names the template line and column.
 *
 * A parsed template is immutable: tmpl_render may run on several threads
 * at once over one struct tmpl.
 */
#ifndef MAAS_TEMPLATE_H
#define MAAS_TEMPLATE_H

#include "core/core.h"

#include <stdint.h>

struct tmpl;

struct tmpl_opts {
    int64_t now;           /* unix seconds (UTC) strftime_now formats; 0 = the current time */
    size_t max_output;     /* bytes of output and of any string built; 0 = 16 MiB */
    uint64_t max_steps;    /* evaluation steps (nodes, loop iterations); 0 = 50 million */
    int max_depth;         /* nesting of macro calls and expressions; 0 = 200 */
};

/* Parses Jinja source (len bytes, need not be NUL-terminated). NULL with
 * ERR_INVALID and "line L col C: what" in e on a syntax error, ERR_NOMEM on
 * out of memory. */
struct tmpl *tmpl_parse(const char *src, size_t len, struct err *e);
void tmpl_free(struct tmpl *t); /* NULL does nothing */

/* Renders t with the variables of vars_json (a JSON object, vars_len
 * bytes: its keys become template variables). o may be NULL (defaults).
 * Returns the output, NUL-terminated, from malloc (length in *len, which may
 * be NULL), or NULL with e: ERR_INVALID for vars_json that is not a JSON
 * object, or a template error (raise_exception's message, an undefined
 * value used, a wrong type), "line L col C: ..."; ERR_EXHAUSTED for a limit
 * passed; ERR_NOMEM. */
char *tmpl_render(const struct tmpl *t, const char *vars_json, size_t vars_len, const struct tmpl_opts *o,
                  size_t *len, struct err *e);

#endif
