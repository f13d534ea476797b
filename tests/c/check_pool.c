/* The row loop's thread pool (src/engine/pool.h) on its own, built by
 * tests/test_pool.py with ThreadSanitizer: every item is done exactly once
 * and the sum of the returns is right, for any range, claim and thread
 * count, with several callers at once (one gets the pool, the others run
 * alone), with workers that are slow inside a claim (the caller must wait
 * for them), and (argument "fork") in a forked child. Prints "ok" or what
 * went wrong. */
#include "engine/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 20000

typedef struct {
    unsigned char done[N]; /* each item's count, atomic */
    int slow;              /* 1: workers sleep inside a claim; 2: the caller does */
    int max_tid;           /* atomic: the largest tid seen */
} Job;

static Py_ssize_t body(void *ctx, Py_ssize_t i0, Py_ssize_t i1, int tid)
{
    Job *job = ctx;
    int seen = __atomic_load_n(&job->max_tid, __ATOMIC_RELAXED);
    while (tid > seen && !__atomic_compare_exchange_n(&job->max_tid, &seen, tid, 0,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    if ((job->slow == 1 && tid > 0) || (job->slow == 2 && tid == 0))
        usleep(2000); /* a thread preempted inside its claim */
    for (Py_ssize_t i = i0; i < i1; i++)
        __atomic_add_fetch(&job->done[i], 1, __ATOMIC_RELAXED);
    return (i1 - i0) * 3;
}

/* One job; 0 when right, else prints the problem. */
static int run(Job *job, Py_ssize_t begin, Py_ssize_t end, Py_ssize_t claim, int threads,
               const char *who)
{
    memset(job->done, 0, sizeof(job->done));
    job->max_tid = 0;
    Py_ssize_t sum = klfast_parallel(body, job, begin, end, claim, threads);
    if (sum != 3 * (end > begin ? end - begin : 0)) {
        printf("%s: [%zd, %zd) claim %zd threads %d: sum %zd\n", who, begin, end, claim,
               threads, sum);
        return 1;
    }
    for (Py_ssize_t i = 0; i < N; i++) {
        int want = i >= begin && i < end;
        if (job->done[i] != want) {
            printf("%s: [%zd, %zd) claim %zd threads %d: item %zd done %d times\n", who, begin,
                   end, claim, threads, i, job->done[i]);
            return 1;
        }
    }
    if (job->max_tid >= (threads > 1 ? threads : 1)) {
        printf("%s: threads %d: tid %d\n", who, threads, job->max_tid);
        return 1;
    }
    return 0;
}

static int many(unsigned seed, const char *who, int slow)
{
    static __thread Job job;
    int helped = 0; /* jobs a worker took part in */
    job.slow = slow;
    for (int r = 0; r < (slow ? 40 : 400); r++) {
        seed = seed * 1103515245u + 12345u;
        Py_ssize_t begin = seed % 100, end = N - (seed >> 8) % 3000, claim = 1 + (seed >> 12) % 900;
        if (r % 50 == 7)
            end = begin; /* empty */
        if (run(&job, begin, end, claim, 1 + (seed >> 20) % 4, who))
            return 1;
        helped += job.max_tid > 0;
    }
    if (slow == 2 && !helped) { /* the caller sleeps in each claim: workers must join */
        printf("%s: no worker took part in any job\n", who);
        return 1;
    }
    return 0;
}

static void *caller(void *arg)
{
    return (void *)(intptr_t)many((unsigned)(intptr_t)arg, "concurrent caller", 0);
}

/* The workers do not survive fork(): the child must start its own. */
static int forked(void)
{
    pid_t child = fork();
    int status = 0;
    if (child == 0)
        _exit(many(20, "forked child", 2));
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        printf("forked child: status %d\n", status);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int bad = many(1, "one caller", 0) | many(2, "slow workers", 1) | many(4, "slow caller", 2);
    long long spins[2] = {0, 0}; /* workers and caller sleep at once */
    klfast_pool_spins(spins);
    bad |= many(3, "no spin", 0);
    klfast_pool_spins(spins);

    pthread_t t[4];
    for (intptr_t i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, caller, (void *)(i + 10));
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad |= (int)(intptr_t)r;
    }

    if (argc > 1 && !strcmp(argv[1], "fork")) /* ThreadSanitizer does not support fork */
        bad |= forked();
    if (!bad)
        printf("ok\n");
    return bad;
}
