/*
 * A minimal unit-test harness. Each tests/unit/<module>_<topic>.c is one
 * program; TEST(name) functions are registered with RUN(name) in main and the
 * program exits non-zero if any CHECK failed. It prints one line per test and
 * a closing "N passed, N failed" line that scripts/run_tests.sh adds up.
 */
#ifndef MAAS_TEST_H
#define MAAS_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failed_checks;
static int test_n_passed, test_n_failed, test_n_skipped;
static const char *test_skip_reason;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            test_failed_checks++;                                              \
        }                                                                      \
    } while (0)

#define CHECKF(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "  %s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            test_failed_checks++;                                              \
        }                                                                      \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                  \
    CHECKF(fabs((double)(a) - (double)(b)) <= (tol), "%g vs %g (tol %g)", (double)(a), (double)(b), (double)(tol))

/* Marks the running test as skipped, with the reason printed. */
#define SKIP(reason)                                                           \
    do {                                                                       \
        test_skip_reason = (reason);                                           \
        return;                                                                \
    } while (0)

#define TEST(name) static void name(void)

#define RUN(name)                                                              \
    do {                                                                       \
        int before_ = test_failed_checks;                                      \
        test_skip_reason = NULL;                                               \
        name();                                                                \
        if (test_failed_checks != before_) {                                   \
            test_n_failed++;                                                   \
            printf("FAIL %s\n", #name);                                        \
        } else if (test_skip_reason) {                                         \
            test_n_skipped++;                                                  \
            printf("skip %s: %s\n", #name, test_skip_reason);                  \
        } else {                                                               \
            test_n_passed++;                                                   \
            printf("ok   %s\n", #name);                                        \
        }                                                                      \
        fflush(stdout);                                                        \
    } while (0)

#define TEST_END()                                                             \
    do {                                                                       \
        printf("%d passed, %d failed, %d skipped\n", test_n_passed, test_n_failed, test_n_skipped); \
        return test_n_failed ? 1 : 0;                                          \
    } while (0)

/* ../shared/testdata, if the project sits beside shared/ (CI and the
 * developers' machines); NULL in a user's clone, where such tests skip. */
static inline const char *test_shared_dir(void)
{
    static const char *candidates[] = {"../shared/testdata", "../../shared/testdata"};
    const char *env = getenv("MAAS_SHARED_TESTDATA");
    if (env && *env)
        return env;
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
        FILE *f;
        char p[512];
        snprintf(p, sizeof p, "%s/tokenizer/gpt-2.gguf", candidates[i]);
        if ((f = fopen(p, "rb"))) {
            fclose(f);
            return candidates[i];
        }
    }
    return NULL;
}

#endif
