/* svg_plot: the file is well-formed XML (checked with python3's
 * xml.dom.minidom when it is there), holds every series, the labels and the
 * escaped text, skips NaN/inf points, handles no series, an empty series and
 * a single point, and leaves no temporary file behind. */
#include "cli/tools.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/maas_svgplot_XXXXXX";

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* 1 well-formed, 0 not, -1 no python3 to tell. */
static int well_formed(const char *path)
{
    if (access("/usr/bin/python3", X_OK) != 0)
        return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import sys, xml.dom.minidom as m; m.parse(sys.argv[1])' %s",
             path);
    return system(cmd) == 0;
}

static int n_files(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

TEST(test_two_series)
{
    double x[6] = {0, 100, 200, 300, 400, 500}, y1[6] = {7.6, 5.1, NAN, 3.9, 3.5, INFINITY},
           y2[3] = {7.0, 4.2, 3.8};
    double x2[3] = {0, 250, 500};
    struct svg_series s[2] = {{"train <loss> & \"more\"", x, y1, 6, NULL}, {"val", x2, y2, 3, "red"}};
    char path[128];
    snprintf(path, sizeof path, "%s/loss.svg", dir);
    struct err e = {0};
    CHECKF(svg_plot(path, "Loss of tiny-llama", "step", "loss (nats)", s, 2, &e) == 0, "%s", e.msg);
    char *t = slurp(path);
    CHECK(t != NULL);
    if (!t)
        return;
    CHECK(well_formed(path) != 0);
    CHECK(strstr(t, "train &lt;loss&gt; &amp; &quot;more&quot;") != NULL);
    CHECK(strstr(t, "data-name=\"val\"") != NULL);
    CHECK(strstr(t, "Loss of tiny-llama") && strstr(t, ">step<") && strstr(t, ">loss (nats)<"));
    CHECK(count(t, "class=\"series\"") == 2);
    CHECK(count(t, "class=\"legend\"") == 2);
    /* series 1 breaks at the NaN: a piece of two points and one of two (the inf is skipped) */
    CHECK(count(t, "<polyline") == 3);
    CHECK(strstr(t, "nan") == NULL && strstr(t, "inf") == NULL);
    CHECK(strstr(t, ">500<") != NULL); /* an x tick at the last step */
    CHECK(n_files() == 1);
}

TEST(test_degenerate)
{
    char path[128];
    snprintf(path, sizeof path, "%s/empty.svg", dir);
    struct err e = {0};
    CHECKF(svg_plot(path, NULL, NULL, NULL, NULL, 0, &e) == 0, "%s", e.msg);
    CHECK(well_formed(path) != 0);
    double x = 3, y = 2.5, nan_ = NAN;
    struct svg_series one[3] = {{"one", &x, &y, 1, NULL}, {"none", NULL, NULL, 0, NULL}, {"skipped", &nan_, &y, 1, NULL}};
    CHECKF(svg_plot(path, "one point", "x", "y", one, 3, &e) == 0, "%s", e.msg);
    char *t = slurp(path);
    CHECK(t && count(t, "<circle") == 1 && count(t, "<polyline") == 0 && count(t, "class=\"series\"") == 3);
    CHECK(t && strstr(t, "nan") == NULL && strstr(t, "data-name=\"skipped\"") != NULL);
    CHECK(well_formed(path) != 0);
    CHECK(n_files() == 2); /* loss.svg and empty.svg, no leftover temporary */
}

TEST(test_errors)
{
    struct err e = {0};
    double x = 1;
    struct svg_series bad = {"bad", &x, NULL, 1, NULL};
    CHECK(svg_plot("/tmp/x.svg", "t", "x", "y", &bad, 1, &e) < 0 && e.code == ERR_INVALID);
    CHECK(strstr(e.msg, "bad") != NULL);
    struct err e2 = {0};
    CHECK(svg_plot("/nonexistent-dir/x.svg", "t", "x", "y", NULL, 0, &e2) < 0 && e2.code == ERR_IO);
    CHECK(strstr(e2.msg, "/nonexistent-dir/x.svg") != NULL);
    struct err e3 = {0};
    CHECK(svg_plot(NULL, "t", "x", "y", NULL, 0, &e3) < 0 && e3.code == ERR_INVALID);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_two_series);
    RUN(test_degenerate);
    RUN(test_errors);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    TEST_END();
}
