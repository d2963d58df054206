/* engine: the weighted fair admission policy (fair.c) on simulated queues.
 * A small simulator stands in for the engine: requests wait in a queue in
 * arrival order, at most R run at once, every step each running request
 * processes one token and leaves when its work is done; as in the engine,
 * a request's work is charged to its account at admission and given back as
 * it is processed. Checked: equal shares, 3:1 weights, work conservation (a lone
 * account gets every slot, an idle one's share goes to the others), no
 * credit for an account that was idle, a short request from a light account
 * overtaking a flood, FCFS when asked, and which sequence preemption takes. */
#include "engine/engine_int.h"
#include "test.h"

#define SIM_MAX 4096

struct sim_req {
    int cls;        /* fair class, -1 until joined */
    int acct;       /* index into the account names */
    int work;       /* tokens still to process */
    int admitted_at, done_at, arrived_at;
};

struct sim {
    struct fair f;
    const char *names[4];
    int weight[4];
    struct sim_req req[SIM_MAX];
    int n_req;
    int queue[SIM_MAX], q_len;    /* indices into req, arrival order */
    int running[SIM_MAX], n_run;  /* admission order */
    int max_running;
    int now;
    long tokens[4];               /* processed per account */
    int idle_slot_steps;          /* steps where a slot was free while something waited */
};

static void sim_init(struct sim *s, int max_running, bool fcfs)
{
    memset(s, 0, sizeof *s);
    s->max_running = max_running;
    struct err e;
    CHECK(fair_init(&s->f, SIM_MAX, fcfs, &e) == 0);
}

static int sim_submit(struct sim *s, int acct, int work)
{
    int i = s->n_req++;
    s->req[i] = (struct sim_req){-1, acct, work, -1, -1, s->now};
    s->queue[s->q_len++] = i;
    return i;
}

/* One step: join new arrivals, admit by fair_pick, process one token each. */
static void sim_step(struct sim *s)
{
    int cls[SIM_MAX];
    for (int k = 0; k < s->q_len; k++) {
        struct sim_req *r = &s->req[s->queue[k]];
        if (r->cls < 0)
            r->cls = fair_join(&s->f, s->names[r->acct], s->weight[r->acct]);
        cls[k] = r->cls;
    }
    while (s->q_len > 0 && s->n_run < s->max_running) {
        int p = fair_pick(&s->f, cls, s->q_len);
        CHECK(p >= 0 && p < s->q_len);
        int i = s->queue[p];
        memmove(s->queue + p, s->queue + p + 1, (size_t)(s->q_len - p - 1) * sizeof *s->queue);
        memmove(cls + p, cls + p + 1, (size_t)(s->q_len - p - 1) * sizeof *cls);
        s->q_len--;
        fair_admitted(&s->f, s->req[i].cls);
        /* as the engine does: its work charged at admission, given back as it is done */
        fair_reserve(&s->f, s->req[i].cls, (double)s->req[i].work / s->f.cls[s->req[i].cls].weight);
        if (s->req[i].admitted_at < 0)
            s->req[i].admitted_at = s->now;
        s->running[s->n_run++] = i;
    }
    if (s->q_len > 0 && s->n_run < s->max_running)
        s->idle_slot_steps++;
    for (int k = 0; k < s->n_run;) {
        struct sim_req *r = &s->req[s->running[k]];
        fair_charge(&s->f, r->cls, 1);
        fair_reserve(&s->f, r->cls, -1.0 / s->f.cls[r->cls].weight);
        s->tokens[r->acct]++;
        if (--r->work == 0) {
            fair_leave(&s->f, r->cls, true);
            r->done_at = s->now;
            memmove(s->running + k, s->running + k + 1, (size_t)(s->n_run - k - 1) * sizeof *s->running);
            s->n_run--;
        } else {
            k++;
        }
    }
    s->now++;
}

static int sim_waiting(const struct sim *s, int acct)
{
    int n = 0;
    for (int k = 0; k < s->q_len; k++)
        n += s->req[s->queue[k]].acct == acct;
    return n;
}

/* Both accounts keep `depth` requests of `work` tokens waiting for `steps`
 * steps; returns the tokens of account 0 over those of account 1. */
static double backlogged_ratio(int w0, int w1, int steps)
{
    static struct sim s;
    sim_init(&s, 8, false);
    s.names[0] = "acct_a";
    s.names[1] = "acct_b";
    s.weight[0] = w0;
    s.weight[1] = w1;
    for (int t = 0; t < steps; t++) {
        for (int a = 0; a < 2; a++)
            while (sim_waiting(&s, a) < 8)
                sim_submit(&s, a, 10 + s.n_req % 21);
        sim_step(&s);
    }
    CHECK(s.idle_slot_steps == 0);
    CHECK(s.tokens[0] + s.tokens[1] == 8L * steps); /* every slot busy every step */
    fair_release(&s.f);
    return (double)s.tokens[0] / (double)s.tokens[1];
}

TEST(test_equal_shares)
{
    double r = backlogged_ratio(1, 1, 1000);
    CHECKF(r > 0.95 && r < 1.05, "ratio %g", r);
}

TEST(test_weights)
{
    double r = backlogged_ratio(3, 1, 1000);
    CHECKF(r > 2.85 && r < 3.15, "ratio %g", r);
    r = backlogged_ratio(1, 4, 1000);
    CHECKF(r > 0.23 && r < 0.27, "ratio %g", r);
}

/* A alone gets every slot; when B comes both share; when B stops A gets
 * everything again; and B, arriving after A ran alone for long, gets no more
 * than its share (A's past was not B's debt) nor less. */
TEST(test_work_conserving_no_credit)
{
    static struct sim s;
    sim_init(&s, 8, false);
    s.names[0] = "acct_a";
    s.names[1] = "acct_b";
    s.weight[0] = s.weight[1] = 1;
    for (int t = 0; t < 300; t++) {
        while (sim_waiting(&s, 0) < 8)
            sim_submit(&s, 0, 10);
        sim_step(&s);
    }
    CHECK(s.tokens[0] == 8L * 300 && s.idle_slot_steps == 0);
    long a0 = s.tokens[0];
    for (int t = 0; t < 400; t++) {
        for (int a = 0; a < 2; a++)
            while (sim_waiting(&s, a) < 8)
                sim_submit(&s, a, 10);
        sim_step(&s);
    }
    long da = s.tokens[0] - a0, db = s.tokens[1];
    CHECKF(da + db == 8L * 400, "%ld + %ld", da, db);
    CHECKF((double)db / (double)da > 0.9 && (double)db / (double)da < 1.1, "B %ld vs A %ld", db, da);
    /* B stops submitting: once its last requests finish A has every slot */
    for (int t = 0; t < 100; t++) {
        while (sim_waiting(&s, 0) < 8)
            sim_submit(&s, 0, 10);
        sim_step(&s);
    }
    long a1 = s.tokens[0], b1 = s.tokens[1];
    for (int t = 0; t < 100; t++) {
        while (sim_waiting(&s, 0) < 8)
            sim_submit(&s, 0, 10);
        sim_step(&s);
    }
    CHECK(s.tokens[1] == b1 && s.tokens[0] - a1 == 800);
    CHECK(s.idle_slot_steps == 0);
    fair_release(&s.f);
}

/* A floods (64 waiting), B sends one short request at a time: under fair
 * B waits at most until one of A's requests ends; under FCFS behind A's
 * whole backlog. The requests without an account ("") are one class. */
static int light_wait(bool fcfs, int flood)
{
    static struct sim s;
    sim_init(&s, 8, fcfs);
    s.names[0] = "";
    s.names[1] = "acct_b";
    s.weight[0] = s.weight[1] = 1;
    for (int k = 0; k < flood; k++)
        sim_submit(&s, 0, 16);
    int worst = 0;
    for (int round = 0; round < 5; round++) {
        for (int t = 0; t < 7; t++)
            sim_step(&s);
        for (int k = 0; k < 4 && s.q_len < flood; k++)
            sim_submit(&s, 0, 16);
        int b = sim_submit(&s, 1, 4);
        while (s.req[b].done_at < 0 && s.now < 100000)
            sim_step(&s);
        int wait = s.req[b].admitted_at - s.req[b].arrived_at;
        worst = wait > worst ? wait : worst;
    }
    fair_release(&s.f);
    return worst;
}

TEST(test_light_tenant_overtakes_flood)
{
    int f32 = light_wait(false, 32), f64 = light_wait(false, 64);
    CHECKF(f32 <= 16 && f64 <= 16, "fair: B waited %d and %d steps", f32, f64);
    int c32 = light_wait(true, 32), c64 = light_wait(true, 64);
    CHECKF(c32 > 40 && c64 > c32, "fcfs: B waited %d and %d steps", c32, c64);
}

TEST(test_preemption_choice)
{
    struct fair f;
    struct err e;
    CHECK(fair_init(&f, 8, false, &e) == 0);
    int a = fair_join(&f, "acct_a", 1), b = fair_join(&f, "acct_b", 1);
    int a2 = fair_join(&f, "acct_a", 1);
    CHECK(a2 == a && a != b);
    fair_admitted(&f, a);
    fair_admitted(&f, a);
    fair_admitted(&f, b);
    fair_charge(&f, a, 100); /* A above its share */
    fair_charge(&f, b, 10);
    CHECK(f.cls[a].vtime == 100 && f.cls[b].vtime == 10);
    int running[3] = {a, b, a};
    CHECK(fair_victim(&f, running, 3) == 2); /* the youngest of A */
    int running2[3] = {a, a, b};
    CHECK(fair_victim(&f, running2, 3) == 1); /* not B, although B is the youngest */
    /* weights count: with weight 20 A's next 100 tokens move it by 5 */
    int a3 = fair_join(&f, "acct_a", 20);
    CHECK(a3 == a && f.cls[a].weight == 20);
    fair_charge(&f, a, 100);
    CHECK(f.cls[a].vtime == 105);
    fair_leave(&f, a, false);
    f.fcfs = true;
    CHECK(fair_victim(&f, running, 3) == 2 && fair_pick(&f, running, 3) == 0);
    fair_preempted(&f, b);
    fair_leave(&f, b, false);
    fair_leave(&f, a, true);
    fair_leave(&f, a, true);
    CHECK(f.cls[a].members == 0 && f.cls[b].members == 0);
    fair_release(&f);
}

int main(void)
{
    RUN(test_equal_shares);
    RUN(test_weights);
    RUN(test_work_conserving_no_credit);
    RUN(test_light_tenant_overtakes_flood);
    RUN(test_preemption_choice);
    TEST_END();
}
