/* svg_plot — a line chart of a few series as a standalone SVG file (see
 * tools.h). Linear axes over the finite points of all series, widened to
 * "nice" tick steps (1, 2 or 5 times a power of ten); a series is drawn as
 * polylines broken at its non-finite points, with a dot where a piece is a
 * single point. Written to PATH.tmp.<pid>, then renamed over PATH. */
#include "cli/tools.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SVG_W 800
#define SVG_H 480
#define SVG_LEFT 80
#define SVG_RIGHT 190
#define SVG_TOP 40
#define SVG_BOTTOM 60

static const char *const svg_palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                          "#9467bd", "#8c564b", "#e377c2", "#17becf"};

struct svg_axis {
    double lo, hi, step; /* lo and hi are multiples of step */
};

struct svg_frame {
    struct svg_axis x, y;
    double px0, px1, py0, py1; /* plot area in pixels: x left..right, y bottom..top */
};

/* text with &, <, >, " and ' escaped. */
static void svg_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t' || *s == '\n')
                fputc(*s, f); /* other control characters are not allowed in XML 1.0 */
        }
    }
}

/* The step of about 5 ticks over [lo, hi], and lo, hi widened to it. */
static struct svg_axis svg_axis_of(double lo, double hi)
{
    if (!(lo <= hi)) {
        lo = 0;
        hi = 1;
    }
    if (!isfinite(hi - lo)) { /* beyond ±1e307 the points are drawn outside the frame */
        lo = fmax(lo, -1e307);
        hi = fmin(hi, 1e307);
    }
    if (hi - lo < 1e-12 * (fabs(lo) + fabs(hi)) || hi == lo) {
        double d = lo == 0 ? 1 : fabs(lo) * 0.1;
        lo -= d;
        hi += d;
    }
    double raw = (hi - lo) / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    double step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
    return (struct svg_axis){floor(lo / step) * step, ceil(hi / step) * step, step};
}

static void svg_bounds(const struct svg_series *s, int n_series, struct svg_frame *fr)
{
    double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
    for (int i = 0; i < n_series; i++)
        for (int j = 0; j < s[i].n; j++) {
            double x = s[i].x[j], y = s[i].y[j];
            if (!isfinite(x) || !isfinite(y))
                continue;
            xl = fmin(xl, x), xh = fmax(xh, x), yl = fmin(yl, y), yh = fmax(yh, y);
        }
    fr->x = svg_axis_of(xl, xh);
    fr->y = svg_axis_of(yl, yh);
    fr->px0 = SVG_LEFT, fr->px1 = SVG_W - SVG_RIGHT, fr->py0 = SVG_H - SVG_BOTTOM, fr->py1 = SVG_TOP;
}

static double svg_px(const struct svg_frame *fr, double x)
{
    return fr->px0 + (x - fr->x.lo) / (fr->x.hi - fr->x.lo) * (fr->px1 - fr->px0);
}

static double svg_py(const struct svg_frame *fr, double y)
{
    return fr->py0 + (y - fr->y.lo) / (fr->y.hi - fr->y.lo) * (fr->py1 - fr->py0);
}

/* A tick value rounded to its step (no 0.30000000000000004, no -0). */
static double svg_tick(double v, double step)
{
    double r = round(v / step) * step;
    return fabs(r) < step * 1e-9 ? 0 : r;
}

static void svg_axes(FILE *f, const struct svg_frame *fr, const char *xlabel, const char *ylabel)
{
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n",
            fr->px0, fr->py1, fr->px1 - fr->px0, fr->py0 - fr->py1);
    for (double v = fr->x.lo; v <= fr->x.hi + fr->x.step * 1e-6; v += fr->x.step) {
        double px = svg_px(fr, v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", px, fr->py0, px, fr->py1);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", px, fr->py0 + 18,
                svg_tick(v, fr->x.step));
    }
    for (double v = fr->y.lo; v <= fr->y.hi + fr->y.step * 1e-6; v += fr->y.step) {
        double py = svg_py(fr, v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", fr->px0, py, fr->px1, py);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", fr->px0 - 6, py + 4,
                svg_tick(v, fr->y.step));
    }
    fprintf(f, "<text class=\"xlabel\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", (fr->px0 + fr->px1) / 2,
            SVG_H - 18);
    svg_text(f, xlabel);
    fprintf(f, "</text>\n<text class=\"ylabel\" x=\"18\" y=\"%.1f\" text-anchor=\"middle\" "
               "transform=\"rotate(-90 18 %.1f)\">", (fr->py0 + fr->py1) / 2, (fr->py0 + fr->py1) / 2);
    svg_text(f, ylabel);
    fputs("</text>\n", f);
}

/* One series: polylines over its runs of finite points, a dot for a run of one. */
static void svg_series_draw(FILE *f, const struct svg_frame *fr, const struct svg_series *s, const char *color)
{
    fputs("<g class=\"series\" data-name=\"", f);
    svg_text(f, s->name);
    fputs("\">\n", f);
    for (int j = 0; j < s->n;) {
        if (!isfinite(s->x[j]) || !isfinite(s->y[j])) {
            j++;
            continue;
        }
        int k = j;
        while (k < s->n && isfinite(s->x[k]) && isfinite(s->y[k]))
            k++;
        if (k - j == 1) {
            fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"", svg_px(fr, s->x[j]), svg_py(fr, s->y[j]));
            svg_text(f, color);
            fputs("\"/>\n", f);
        } else {
            fputs("<polyline fill=\"none\" stroke-width=\"1.5\" stroke=\"", f);
            svg_text(f, color);
            fputs("\" points=\"", f);
            for (int i = j; i < k; i++)
                fprintf(f, "%s%.2f,%.2f", i > j ? " " : "", svg_px(fr, s->x[i]), svg_py(fr, s->y[i]));
            fputs("\"/>\n", f);
        }
        j = k;
    }
    fputs("</g>\n", f);
}

static void svg_legend(FILE *f, const struct svg_frame *fr, const struct svg_series *s, int n_series)
{
    for (int i = 0; i < n_series; i++) {
        const char *color = s[i].color ? s[i].color : svg_palette[i % 8];
        double y = fr->py1 + 10 + 20 * i, x = fr->px1 + 15;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke-width=\"2\" stroke=\"", x, y,
                x + 25, y);
        svg_text(f, color);
        fprintf(f, "\"/>\n<text class=\"legend\" x=\"%.1f\" y=\"%.1f\">", x + 32, y + 4);
        svg_text(f, s[i].name ? s[i].name : "");
        fputs("</text>\n", f);
    }
}

static int svg_check(const char *path, const struct svg_series *s, int n_series, struct err *e)
{
    if (!path || !*path)
        return err_set(e, ERR_INVALID, "svg_plot: no output path");
    if (n_series < 0 || (n_series > 0 && !s))
        return err_set(e, ERR_INVALID, "svg_plot: %d series", n_series);
    for (int i = 0; i < n_series; i++)
        if (s[i].n < 0 || (s[i].n > 0 && (!s[i].x || !s[i].y)))
            return err_set(e, ERR_INVALID, "svg_plot: series %d ('%s') has %d points and %s", i,
                           s[i].name ? s[i].name : "", s[i].n, s[i].n < 0 ? "a negative count" : "no data");
    return 0;
}

static void svg_write(FILE *f, const char *title, const char *xlabel, const char *ylabel,
                      const struct svg_series *s, int n_series)
{
    struct svg_frame fr;
    svg_bounds(s, n_series, &fr);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<title>",
            SVG_W, SVG_H, SVG_W, SVG_H);
    svg_text(f, title);
    fprintf(f, "</title>\n<text class=\"title\" x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">",
            (SVG_LEFT + SVG_W - SVG_RIGHT) / 2);
    svg_text(f, title);
    fputs("</text>\n", f);
    svg_axes(f, &fr, xlabel, ylabel);
    for (int i = 0; i < n_series; i++)
        svg_series_draw(f, &fr, &s[i], s[i].color ? s[i].color : svg_palette[i % 8]);
    svg_legend(f, &fr, s, n_series);
    fputs("</svg>\n", f);
}

int svg_plot(const char *path, const char *title, const char *xlabel, const char *ylabel,
             const struct svg_series *s, int n_series, struct err *e)
{
    if (svg_check(path, s, n_series, e) < 0)
        return -1;
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp)
        return err_set(e, ERR_NOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        err_set(e, ERR_IO, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    svg_write(f, title, xlabel, ylabel, s, n_series);
    int bad = ferror(f) | (fflush(f) != 0) | (fsync(fileno(f)) != 0);
    int saved = errno;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        err_set(e, ERR_IO, "%s: %s", bad ? tmp : path, strerror(bad ? saved : errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}
