/* A very small test harness: CHECK records a failure and goes on; the summary line
 * "N passed, N failed" is what CI reads. */
#ifndef MINITEST_H
#define MINITEST_H

#include <stdio.h>

static int mt_failed_checks, mt_passed, mt_failed, mt_current_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            mt_failed_checks++;                                                                    \
            mt_current_failed = 1;                                                                 \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);             \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long mt_a = (long long)(a), mt_b = (long long)(b);                                    \
        if (mt_a != mt_b) {                                                                        \
            mt_failed_checks++;                                                                    \
            mt_current_failed = 1;                                                                 \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a,  \
                    mt_a, #b, mt_b);                                                               \
        }                                                                                          \
    } while (0)

#define RUN(test)                                                                                  \
    do {                                                                                           \
        mt_current_failed = 0;                                                                     \
        test();                                                                                    \
        if (mt_current_failed) {                                                                   \
            mt_failed++;                                                                           \
            fprintf(stderr, "FAIL %s\n", #test);                                                   \
        } else {                                                                                   \
            mt_passed++;                                                                           \
        }                                                                                          \
    } while (0)

static int mt_summary(void)
{
    printf("%d passed, %d failed\n", mt_passed, mt_failed);
    return mt_failed ? 1 : 0;
}

#endif
