/*
 * The row operations of the network and their backward passes, for one
 * real type. Included by net_f32.c and net_f64.c with R (float or double)
 * and SFX(name) (name##_f32 or name##_f64) defined.
 */

/* y = x * rs * w with rs = 1 / sqrt(mean(x^2) + eps); *rs_out = rs. */
static void SFX(rms_fwd)(R *y, R *rs_out, const R *x, const R *w, int n, double eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * (double)x[i];
    R rs = (R)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++)
        y[i] = x[i] * rs * w[i];
    *rs_out = rs;
}

/* dx += rs * (g - xhat * mean(g * xhat)), g = dy * w, xhat = x * rs; and,
 * when dw is not NULL, dw += dy * xhat. */
static void SFX(rms_bwd)(R *dx, R *dw, const R *dy, const R *x, const R *w, R rs, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++)
        m += (double)dy[i] * (double)w[i] * (double)x[i] * (double)rs;
    R mr = (R)(m / n);
    for (int i = 0; i < n; i++) {
        R xh = x[i] * rs;
        dx[i] += rs * (dy[i] * w[i] - xh * mr);
        if (dw)
            dw[i] += dy[i] * xh;
    }
}

/* Rotates each head's pairs by the position's angles (inverse: by minus
 * them, which is the backward pass of the rotation). */
static void SFX(rope)(R *x, int n_head, int hd, int n_rot, bool neox, const R *c, const R *s, bool inverse)
{
    int half = n_rot / 2;
    for (int h = 0; h < n_head; h++) {
        R *v = x + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            R x0 = v[a], x1 = v[b], sn = inverse ? -s[i] : s[i];
            v[a] = x0 * c[i] - x1 * sn;
            v[b] = x0 * sn + x1 * c[i];
        }
    }
}

static inline R SFX(sigmoid)(R x)
{
    return (R)1 / ((R)1 + REXP(-x));
}

/* a = silu(g) * u */
static void SFX(swiglu_fwd)(R *a, const R *g, const R *u, int n)
{
    for (int i = 0; i < n; i++)
        a[i] = g[i] * SFX(sigmoid)(g[i]) * u[i];
}

/* dg = da * u * silu'(g), du = da * silu(g) (written, not added) */
static void SFX(swiglu_bwd)(R *dg, R *du, const R *da, const R *g, const R *u, int n)
{
    for (int i = 0; i < n; i++) {
        R sg = SFX(sigmoid)(g[i]), d = da[i];
        R silu = g[i] * sg;
        du[i] = d * silu;
        dg[i] = d * u[i] * sg * ((R)1 + g[i] * ((R)1 - sg));
    }
}

/* -log softmax(logits)[target]; dlogits (may be logits) = (p - onehot) * scale. */
static double SFX(xent)(R *dlogits, const R *logits, int n, int target, double scale)
{
    R mx = logits[0];
    for (int i = 1; i < n; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double z = 0;
    for (int i = 0; i < n; i++)
        z += (double)REXP(logits[i] - mx);
    double loss = log(z) - (double)(logits[target] - mx);
    if (dlogits) {
        double iz = 1.0 / z;
        for (int i = 0; i < n; i++)
            dlogits[i] = (R)((double)REXP(logits[i] - mx) * iz * scale);
        dlogits[target] -= (R)scale;
    }
    return loss;
}
