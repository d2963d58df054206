/*
 * Golden test: every chat template in ../shared/testdata/templates rendered
 * with every case in ../shared/testdata/chat, compared byte for byte with
 * ../shared/tools/render_chat_template.py (Python Jinja2 set up as Hugging
 * Face sets it up), which runs here under /usr/bin/python3. Where the
 * reference fails (raise_exception, an undefined value) the engine must fail
 * too. Skips without ../shared or without python3-jinja2.
 * MAAS_TEMPLATE_DIFF=1 prints both renderings of a mismatch.
 */
#include "template/template.h"
#include "test.h"

#include <dirent.h>
#include <jansson.h>
#include <sys/wait.h>
#include <time.h>

#define REF_NOW 1768469400 /* 2026-01-15 09:30:00 UTC: the reference's default now */

static char *read_all(FILE *f, size_t *n)
{
    struct sbuf b = SBUF_INIT;
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        sbuf_add(&b, buf, k);
    return sbuf_detach(&b, n);
}

static char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *s = read_all(f, n);
    fclose(f);
    return s;
}

/* The reference's rendering; *status its exit status (-1: could not run). */
static char *reference(const char *tools, const char *tmpl, const char *cas, size_t *n, int *status)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/render_chat_template.py' '%s' '%s' 2>/dev/null", tools, tmpl, cas);
    FILE *p = popen(cmd, "r");
    if (!p) {
        *status = -1;
        return NULL;
    }
    char *out = read_all(p, n);
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

/* The variables render_chat_template.py gives a template, as JSON. */
static char *case_vars(const char *path)
{
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    if (!c)
        return NULL;
    json_t *v = json_object();
    json_t *kw = json_object_get(c, "kwargs");
    if (json_is_object(kw))
        json_object_update(v, kw);
    json_object_set(v, "messages", json_object_get(c, "messages"));
    json_t *agp = json_object_get(c, "add_generation_prompt");
    json_object_set_new(v, "add_generation_prompt", agp ? json_incref(agp) : json_true());
    const char *keys[] = {"bos_token", "eos_token"};
    for (int i = 0; i < 2; i++) {
        json_t *t = json_object_get(c, keys[i]);
        json_object_set_new(v, keys[i], t ? json_incref(t) : json_string(""));
    }
    json_t *tools = json_object_get(c, "tools");
    if (tools && !json_is_null(tools))
        json_object_set(v, "tools", tools);
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    json_decref(c);
    return s;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t list_dir(const char *dir, const char *ext, char **names, size_t cap)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) && n < cap) {
        size_t l = strlen(de->d_name), el = strlen(ext);
        if (l > el && !strcmp(de->d_name + l - el, ext))
            names[n++] = strdup(de->d_name);
    }
    if (d)
        closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    return n;
}

static int one_template(const char *dir, const char *tools, const char *name, char **cases, size_t n_cases,
                        int *n_pairs_ok, int *n_pairs)
{
    char tp[1024], cp[1024];
    snprintf(tp, sizeof tp, "%s/templates/%s", dir, name);
    size_t sl;
    char *src = read_file(tp, &sl);
    struct err e = {0};
    struct tmpl *t = src ? tmpl_parse(src, sl, &e) : NULL;
    if (!t)
        fprintf(stderr, "  %s: does not parse: %s\n", name, e.msg);
    int bad = 0;
    bool diff = getenv("MAAS_TEMPLATE_DIFF") != NULL;
    for (size_t c = 0; c < n_cases; c++) {
        snprintf(cp, sizeof cp, "%s/chat/%s", dir, cases[c]);
        size_t rn = 0, on = 0;
        int st;
        char *ref = reference(tools, tp, cp, &rn, &st);
        char *vars = case_vars(cp);
        struct tmpl_opts o = {.now = REF_NOW};
        char *out = t && vars ? tmpl_render(t, vars, strlen(vars), &o, &on, &e) : NULL;
        bool ok = st == 0 ? out && on == rn && !memcmp(out, ref, rn) : st == 1 && !out;
        (*n_pairs)++;
        if (ok) {
            (*n_pairs_ok)++;
        } else {
            bad++;
            fprintf(stderr, "  %s × %s: reference %s, engine %s%s\n", name, cases[c], st == 0 ? "renders" : "fails",
                    out ? "renders" : "fails: ", out ? "" : e.msg);
            if (diff && out && ref)
                fprintf(stderr, "---- reference\n%.*s\n---- engine\n%.*s\n----\n", (int)rn, ref, (int)on, out);
        }
        free(ref);
        free(vars);
        free(out);
    }
    tmpl_free(t);
    free(src);
    return bad;
}

TEST(every_template_every_case)
{
    const char *dir = test_shared_dir();
    if (!dir)
        SKIP("../shared/testdata not found");
    if (system("/usr/bin/python3 -c 'import jinja2' >/dev/null 2>&1") != 0)
        SKIP("/usr/bin/python3 with jinja2 (python3-jinja2) not found: no reference to compare with");
    char tools[600], tdir[600], cdir[600];
    snprintf(tools, sizeof tools, "%s/../tools", dir);
    snprintf(tdir, sizeof tdir, "%s/templates", dir);
    snprintf(cdir, sizeof cdir, "%s/chat", dir);
    char *tn[128], *cn[128];
    size_t nt = list_dir(tdir, ".jinja", tn, 128), nc = list_dir(cdir, ".json", cn, 128);
    const char *only = getenv("MAAS_TEMPLATE_ONLY");
    CHECK(nt > 0 && nc > 0);
    int matched = 0, pairs_ok = 0, pairs = 0, tried = 0;
    for (size_t i = 0; i < nt; i++) {
        if (only && !strstr(tn[i], only))
            continue;
        tried++;
        if (one_template(dir, tools, tn[i], cn, nc, &pairs_ok, &pairs) == 0)
            matched++;
    }
    printf("  %d of %d templates match the reference on every case (%d of %d template × case pairs)\n", matched,
           tried, pairs_ok, pairs);
    CHECKF(pairs_ok == pairs, "%d pairs differ", pairs - pairs_ok);
    for (size_t i = 0; i < nt; i++)
        free(tn[i]);
    for (size_t i = 0; i < nc; i++)
        free(cn[i]);
}

int main(void)
{
    RUN(every_template_every_case);
    TEST_END();
}
