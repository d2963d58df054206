/*
 * maas serve — the OpenAI-compatible HTTP server: loads every --model,
 * starts one engine per model and the HTTP daemon, then waits for SIGINT or
 * SIGTERM and shuts down in order (HTTP first, so that open streams end and
 * their sequences are cancelled; then the engines; then the models).
 *
 * Billing: unless --no-auth, the ledger under --data DIR (or --db URL) is
 * opened first; holds left by dead processes are released (billing_recover);
 * at the first start an admin key is created and printed once on stdout (or
 * --admin-key-file's key is registered). The server then checks keys, holds
 * and settles every request through it.
 */
#include "cli/cli.h"
#include "billing/billing.h"
#include "cli/gen.h"
#include "engine/engine.h"
#include "server/server.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_MODELS 16
#define STALE_HOLD_S 86400 /* default --hold-max-age: holds older than this are stale */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: maas serve --model [NAME=]FILE [--model [NAME=]FILE ...] [options]\n"
            "  --model [NAME=]FILE   a model to serve; clients name it NAME, else its general.name,\n"
            "                        else its file name (repeatable, up to %d)\n"
            "  --host H              address to listen on (default 127.0.0.1)\n"
            "  --port P              port (default 8080; 0 = any free port, printed at start)\n"
            "  --threads T           kernel threads per model (default: all CPUs)\n"
            "  --ctx N               most positions of one request, prompt + output (default min(train, 4096))\n"
            "  --kv-blocks N         KV cache blocks of 16 positions per model (default: 4 contexts)\n"
            "  --max-queue N         requests waiting per model before 429 (default 256)\n"
            "  --max-running N       sequences decoding at once per model (default 64)\n"
            "  --sched fair|fcfs     admission order: weighted fair shares across accounts (default),\n"
            "                        or first come, first served\n"
            "  --max-body BYTES      largest request body, else 413 (default 1048576)\n"
            "  --timeout S           close a connection idle or stalled for S seconds (default 30)\n"
            "  --header-timeout S    a request's line and headers must arrive within S seconds of their\n"
            "                        first byte, else 408 and close (default 10)\n"
            "  --min-body-rate B     a request body must arrive at B bytes/s or more, after a grace of\n"
            "                        --header-timeout seconds, else the connection is closed (default 4096;\n"
            "                        0 = no minimum)\n"
            "  --max-connections N   open client connections, idle ones included; past N a new one gets\n"
            "                        503 (default 10000, or what the open-file limit leaves room for)\n"
            "  --max-connections-per-ip N  the same, from one client address (default: no own limit)\n"
            "  --access-log FILE|-   append one JSON line per request to FILE (- = stdout): time, request id,\n"
            "                        account and key id (never the key), model, status, tokens, duration,\n"
            "                        client address\n"
            "  --data DIR            the ledger (accounts, keys, prices, usage) in DIR (default ./maas-data)\n"
            "  --db URL              the ledger in a store URL instead (postgresql://...)\n"
            "  --admin-key-file F    register the admin key in F (first line) instead of creating one\n"
            "  --secret-file F       the API-key hashing secret (32 bytes, mode 0600); required with --db\n"
            "                        postgresql://..., the same file on every node (default: in --data DIR)\n"
            "  --hold-max-age S      a billing hold this old is stale: its request is released uncharged\n"
            "                        (at start, and by the sweeper while serving; default 86400)\n"
            "  --hold-sweep S        look for stale holds and dead processes' holds every S seconds\n"
            "                        while serving (default 300)\n"
            "  --no-auth             serve without API keys and without metering (loopback only)\n"
            "  --chat-template NAME  force a built-in chat format (chatml, llama3, llama2, mistral-nemo,\n"
            "                        deepseek, phi3, gemma, glm4) instead of the model's own template;\n"
            "                        or FILE.jinja: a Jinja chat template that replaces the model's\n",
            MAX_MODELS);
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

struct served {
    char *name;                /* from malloc */
    const char *path;          /* borrowed: argv */
    struct model *m;           /* owned */
    struct tokenizer *tok;     /* owned */
    struct engine *eng;        /* owned */
};

/* general.name, else the file name without directory and .gguf. */
static char *default_name(const struct model *m, const char *path)
{
    struct gguf_str s;
    struct err e;
    if (gguf_get_str(model_gguf(m), "general.name", &s, &e) == 0 && s.len > 0 && s.len < 256 &&
        !memchr(s.ptr, 0, s.len))
        return strndup(s.ptr, s.len);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".gguf"))
        n -= 5;
    return strndup(base, n);
}

/* The first line of path, without surrounding blanks, into buf. Like the
 * secret file, a key file that its group or others may read is refused. */
static int read_key_file(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "maas serve: --admin-key-file %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    if (st.st_mode & 077) {
        fprintf(stderr, "maas serve: --admin-key-file %s: readable by others (mode %03o); run chmod 600 on it\n",
                path, (unsigned)(st.st_mode & 0777));
        fclose(f);
        return -1;
    }
    char *line = fgets(buf, (int)n, f);
    fclose(f);
    if (!line) {
        fprintf(stderr, "maas serve: --admin-key-file %s: empty\n", path);
        return -1;
    }
    size_t len = strlen(buf);
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
        buf[--len] = 0;
    return 0;
}

/* The ledger's name for messages: a URL's password and query (which may hold
 * one) replaced by "***" — no secret goes to a log. */
static void redact_url(const char *url, char *buf, size_t n)
{
    const char *scheme = strstr(url, "://");
    snprintf(buf, n, "%s", url);
    if (!scheme)
        return;
    size_t host = (size_t)(scheme + 3 - url);
    char *at = strchr(buf + host, '@'), *slash = strchr(buf + host, '/');
    char tail[512] = "";
    if (at && (!slash || at < slash)) {
        char *colon = memchr(buf + host, ':', (size_t)(at - buf - host));
        if (colon) {
            snprintf(tail, sizeof tail, "%s", at);
            snprintf(colon + 1, n - (size_t)(colon + 1 - buf), "***%s", tail);
        }
    }
    char *q = strchr(buf + host, '?');
    if (q && (size_t)(q - buf) + 5 < n)
        strcpy(q, "?***");
}

static int open_billing(const char *db_url, const char *secret_file, const char *admin_key_file,
                        int64_t stale_hold_s, struct billing **out)
{
    char db[512];
    redact_url(db_url, db, sizeof db);
    struct err e;
    struct billing *b = NULL;
    struct billing_options bo = {.db = db_url, .secret_file = secret_file, .writer = 1};
    if (billing_open(&bo, &b, &e) < 0) {
        fprintf(stderr, "maas serve: ledger %s: %s\n", db, e.msg);
        return -1;
    }
    int64_t released = 0;
    if (billing_recover(b, stale_hold_s, &released, &e) < 0) {
        fprintf(stderr, "maas serve: ledger %s: releasing the holds of dead processes: %s\n", db, e.msg);
        goto fail;
    }
    if (released)
        log_info("ledger %s: released %lld holds of requests that died with their process (not charged)", db,
                 (long long)released);
    if (admin_key_file) {
        char key[512];
        int rc = read_key_file(admin_key_file, key, sizeof key);
        if (rc == 0 && billing_admin_key_import(b, key, &e) < 0) {
            fprintf(stderr, "maas serve: --admin-key-file %s: %s\n", admin_key_file, e.msg);
            rc = -1;
        }
        sodium_memzero(key, sizeof key);
        if (rc < 0)
            goto fail;
    } else {
        int missing = 0;
        if (billing_admin_key_missing(b, &missing, &e) < 0) {
            fprintf(stderr, "maas serve: ledger %s: %s\n", db, e.msg);
            goto fail;
        }
        if (missing) {
            char key[512];
            if (billing_admin_key_create(b, key, sizeof key, &e) < 0) {
                fprintf(stderr, "maas serve: ledger %s: creating the admin key: %s\n", db, e.msg);
                goto fail;
            }
            /* the terminal, not the log: shown this once */
            printf("maas serve: created the admin key for /admin/...; it is shown only this once:\n%s\n", key);
            fflush(stdout);
            sodium_memzero(key, sizeof key);
        }
    }
    log_info("ledger: %s (API keys required; usage metered)", db);
    *out = b;
    return 0;
fail:
    billing_close(b);
    return -1;
}

struct serve_args {
    const char *specs[MAX_MODELS];
    int n_specs, max_body, no_auth, hold_max_age, hold_sweep;
    const char *chat_template, *db, *admin_key_file, *secret_file;
    struct server_opts so;
    struct engine_opts eo;
};

/* One option a with its value v into sa: 0, or the exit status of a usage
 * error (reported). */
static int parse_opt(const char *a, const char *v, struct serve_args *sa, struct err *e)
{
    int rc = 0;
    if (!strcmp(a, "--model") || !strcmp(a, "-m")) {
        if (sa->n_specs == MAX_MODELS)
            return gen_usage_error("serve", NULL, "at most %d models", MAX_MODELS);
        sa->specs[sa->n_specs++] = v;
    } else if (!strcmp(a, "--host")) {
        sa->so.host = v;
    } else if (!strcmp(a, "--port")) {
        rc = arg_int(a, v, 0, 65535, &sa->so.port, e);
    } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
        rc = arg_int(a, v, 1, 1024, &sa->eo.n_threads, e);
    } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
        rc = arg_int(a, v, 2, 1 << 22, &sa->eo.n_ctx, e);
    } else if (!strcmp(a, "--kv-blocks")) {
        rc = arg_int(a, v, 1, 1 << 24, &sa->eo.kv_blocks, e);
    } else if (!strcmp(a, "--max-queue")) {
        rc = arg_int(a, v, 1, 1 << 20, &sa->eo.max_queue, e);
    } else if (!strcmp(a, "--max-running")) {
        rc = arg_int(a, v, 1, 4096, &sa->eo.max_running, e);
    } else if (!strcmp(a, "--sched")) {
        if (strcmp(v, "fair") && strcmp(v, "fcfs"))
            return gen_usage_error("serve", NULL, "--sched '%s': expected fair or fcfs", v);
        sa->eo.fcfs = !strcmp(v, "fcfs");
    } else if (!strcmp(a, "--max-body")) {
        rc = arg_int(a, v, 16, 1 << 30, &sa->max_body, e);
    } else if (!strcmp(a, "--timeout")) {
        rc = arg_int(a, v, 1, 86400, &sa->so.timeout_s, e);
    } else if (!strcmp(a, "--header-timeout")) {
        rc = arg_int(a, v, 1, 3600, &sa->so.header_timeout_s, e);
    } else if (!strcmp(a, "--min-body-rate")) {
        rc = arg_int(a, v, 0, 1 << 30, &sa->so.min_body_rate, e);
    } else if (!strcmp(a, "--max-connections")) {
        rc = arg_int(a, v, 1, 1 << 20, &sa->so.max_connections, e);
    } else if (!strcmp(a, "--max-connections-per-ip")) {
        rc = arg_int(a, v, 1, 1 << 20, &sa->so.max_per_ip, e);
    } else if (!strcmp(a, "--access-log")) {
        sa->so.access_log = v;
    } else if (!strcmp(a, "--hold-max-age")) {
        rc = arg_int(a, v, 60, 30 * 86400, &sa->hold_max_age, e);
    } else if (!strcmp(a, "--hold-sweep")) {
        rc = arg_int(a, v, 1, 86400, &sa->hold_sweep, e);
    } else if (!strcmp(a, "--chat-template")) {
        sa->chat_template = v;
    } else if (!strcmp(a, "--data") || !strcmp(a, "--db")) {
        if (sa->db)
            return gen_usage_error("serve", NULL, "one of --data and --db, once");
        sa->db = v;
    } else if (!strcmp(a, "--admin-key-file")) {
        sa->admin_key_file = v;
    } else if (!strcmp(a, "--secret-file")) {
        sa->secret_file = v;
    } else {
        return gen_usage_error("serve", usage, "unknown option '%s'", a);
    }
    return rc < 0 ? gen_usage_error("serve", NULL, "%s", e->msg) : 0;
}

/* The command line into sa: 0 to go on, -1 after --help (exit 0), or the
 * exit status of a usage error (reported). */
static int parse_args(int argc, char **argv, struct serve_args *sa)
{
    struct err e;
    memset(sa, 0, sizeof *sa);
    sa->max_body = 1 << 20;
    sa->hold_max_age = STALE_HOLD_S;
    sa->hold_sweep = 300;
    sa->so = server_opts_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return -1;
        } else if (!strcmp(a, "--no-auth")) {
            sa->no_auth = 1;
            continue;
        } else if (!v) {
            return gen_usage_error("serve", NULL, "%s needs a value (or is unknown)", a);
        }
        int rc = parse_opt(a, v, sa, &e);
        if (rc)
            return rc;
        i++;
    }
    if (sa->n_specs == 0)
        return gen_usage_error("serve", usage, "--model is required");
    if (sa->chat_template && tok_chat_family_from_name(sa->chat_template) < 0 &&
        !(strlen(sa->chat_template) > 6 && !strcmp(sa->chat_template + strlen(sa->chat_template) - 6, ".jinja")))
        return gen_usage_error("serve", NULL, "--chat-template: unknown format '%s'", sa->chat_template);
    sa->so.max_body = (size_t)sa->max_body;
    sa->so.loopback_only = sa->no_auth;
    if (sa->no_auth && (sa->db || sa->admin_key_file || sa->secret_file))
        return gen_usage_error("serve", NULL, "--no-auth does not take --data, --db, --admin-key-file or --secret-file");
    return 0;
}

/* Loads model i ([NAME=]FILE), its tokenizer and engine into sv[i], and
 * describes it to the server in sm[i]. -1 when reported. */
static int load_model(const struct serve_args *sa, int i, struct served *sv, struct server_model *sm)
{
    struct err e;
    const char *spec = sa->specs[i], *eq = strchr(spec, '=');
    sv->path = eq ? eq + 1 : spec;
    if (eq && eq == spec) {
        fprintf(stderr, "maas serve: --model '%s': empty name before '='\n", spec);
        return -1;
    }
    if (!(sv->m = model_load(sv->path, &e)) || !(sv->tok = tok_load(model_gguf(sv->m), &e))) {
        fprintf(stderr, "maas serve: %s: %s\n", sv->path, e.msg);
        return -1;
    }
    const char *tmpl_name = sa->chat_template;
    if (cli_chat_template_file(sv->tok, &tmpl_name, &e) < 0) {
        fprintf(stderr, "maas serve: --chat-template: %s\n", e.msg);
        return -1;
    }
    sv->name = eq ? strndup(spec, (size_t)(eq - spec)) : default_name(sv->m, sv->path);
    if (!sv->name) {
        fprintf(stderr, "maas serve: out of memory\n");
        return -1;
    }
    const struct model_hparams *hp = model_hparams(sv->m);
    struct engine_opts o = sa->eo;
    if (!o.n_ctx) /* the engine's own default, made explicit so the server knows it */
        o.n_ctx = engine_default_n_ctx(hp);
    o.embed_only = model_is_embedding(sv->m); /* chat on it is a 400: no KV cache for it */
    if (!(sv->eng = engine_new(sv->m, sv->tok, &o, &e))) {
        fprintf(stderr, "maas serve: %s: %s\n", sv->path, e.msg);
        return -1;
    }
    *sm = (struct server_model){.name = sv->name, .m = sv->m, .tok = sv->tok, .eng = sv->eng, .n_ctx = o.n_ctx,
                                .chat_template = tmpl_name};
    log_info("model '%s' from %s: %s, %d layers, context %d", sv->name, sv->path, hp->arch_name, hp->n_layer, o.n_ctx);
    if (model_is_embedding(sv->m))
        log_info("model '%s' is for %s (pooling %s): chat and completions on it answer 400", sv->name,
                 hp->pooling == MODEL_POOL_RANK ? "/v1/rerank" : "/v1/embeddings", model_pooling_name(hp->pooling));
    return 0;
}

/* Starts the server and waits for SIGINT or SIGTERM. -1 when reported. */
static int serve(struct server_model *sm, int n_models, const struct serve_args *sa, struct server **srv)
{
    struct err e;
    struct sigaction sig;
    memset(&sig, 0, sizeof sig);
    sig.sa_handler = on_signal;
    sigemptyset(&sig.sa_mask);
    sigaction(SIGINT, &sig, NULL);
    sigaction(SIGTERM, &sig, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* a connection is a descriptor: take all the open-file limit allows */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    if (!(*srv = server_new(sm, n_models, &sa->so, &e))) {
        fprintf(stderr, "maas serve: %s\n", e.msg);
        return -1;
    }
    if (sa->no_auth)
        fprintf(stderr, "maas serve: WARNING: --no-auth: no API keys are checked and nothing is metered or billed; "
                        "serving this machine only\n");
    fprintf(stderr, "maas serve: listening on http://%s:%d\n", sa->so.host, server_port(*srv));
    fflush(stderr);
    while (!stop_signal) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "maas serve: signal %d, shutting down\n", (int)stop_signal);
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    struct serve_args sa;
    int st = parse_args(argc, argv, &sa);
    if (st)
        return st < 0 ? 0 : st;

    int rc = 1;
    struct served sv[MAX_MODELS];
    struct server_model sm[MAX_MODELS];
    struct server *srv = NULL;
    struct billing *bill = NULL;
    memset(sv, 0, sizeof sv);
    if (!sa.no_auth &&
        open_billing(sa.db ? sa.db : "maas-data", sa.secret_file, sa.admin_key_file, sa.hold_max_age, &bill) < 0)
        goto out;
    sa.so.billing = bill;
    sa.so.recover_every_ms = sa.hold_sweep * 1000;
    sa.so.recover_after_s = sa.hold_max_age;
    for (int i = 0; i < sa.n_specs; i++)
        if (load_model(&sa, i, &sv[i], &sm[i]) < 0)
            goto out;
    if (serve(sm, sa.n_specs, &sa, &srv) < 0)
        goto out;
    rc = 0;
out:
    server_free(srv);
    for (int i = 0; i < sa.n_specs; i++) {
        engine_free(sv[i].eng);
        tok_free(sv[i].tok);
        model_free(sv[i].m);
        free(sv[i].name);
    }
    billing_close(bill); /* after the server: every settlement is committed */
    return rc;
}
