/* The row loop's threads: a small pool in which the calling thread never
 * waits for a thread that has not started.
 *
 * klfast_parallel(fn, ctx, begin, end, claim, n) runs fn(ctx, i0, i1, tid)
 * over [begin, end) in claims of `claim` items, on the calling thread (tid
 * 0) and up to n - 1 workers (tids 1 .. n - 1), and returns the sum of what
 * fn returned. Claims are taken in order from a shared counter by whoever
 * is free. The caller starts on the claims at once; a worker joins the job
 * when the system runs it. When the claims run out, the caller closes the
 * job and waits only for workers inside it (at most one claim each): a
 * worker the system has not run by then never joins, so a busy core costs
 * the call nothing. If a worker inside was preempted, the caller soon
 * sleeps instead of spinning, so that its core goes idle and the system
 * may move the worker there. (An OpenMP parallel region instead ends in a
 * barrier that waits for every thread of the team: on a 2-core machine with
 * the other core busy, a 2-thread call of 1,000 x 100 took 2.6 times as
 * long as a 1-thread call, benchmarks/busy.py.)
 *
 * One job at a time: a caller that finds the pool in use (another Python
 * thread's call) runs its job alone. After a job, a worker keeps looking
 * for the next one for 0.1 ms (calls often come in a row), yielding its core
 * between looks (sched_yield: on a free core it looks at once, on a busy
 * one it lets the other program run instead of being preempted later,
 * inside a claim; with a pause instead, 1,000 x 100 beside a busy core took
 * 1.0-1.7 times a 1-thread call, with the yield 1.0), then sleeps. Workers
 * block signals (Python's handlers run on the main thread); a forked child
 * starts a fresh pool.
 *
 * Without pthreads and GCC-style atomics (MSVC), every job runs on the
 * calling thread.
 */
#ifndef KLFAST_POOL_H
#define KLFAST_POOL_H

#include <Python.h>

typedef Py_ssize_t (*klfast_task)(void *ctx, Py_ssize_t i0, Py_ssize_t i1, int tid);

#if defined(__GNUC__) && !defined(_WIN32)
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <sched.h>

/* The state word: the job's generation (bits 32-63), closed (bit 31), the
 * workers that joined (bits 16-30) and those still inside (bits 0-15). */
#define KLFAST_POOL_INSIDE 1ull
#define KLFAST_POOL_JOINED (1ull << 16)
#define KLFAST_POOL_CLOSED (1ull << 31)
#define KLFAST_POOL_GEN (1ull << 32)
#define KLFAST_POOL_MAX_WORKERS 1023

static struct {
    pthread_mutex_t job_lock;   /* held by the caller for a whole job */
    pthread_mutex_t sleep_lock; /* with wake: workers that sleep; with done: the caller */
    pthread_cond_t wake, done;
    int n_workers;              /* started (under job_lock) */
    int sleepers;               /* atomic */
    int caller_sleeps;          /* atomic */
    unsigned long long state;   /* atomic, as above */
    /* the job, written before its generation is published */
    klfast_task fn;
    void *ctx;
    Py_ssize_t next, end, claim; /* next: atomic, the first item not claimed */
    Py_ssize_t result;          /* atomic: the workers' sum */
    int max_joined;
    /* spins before sleeping, ns: a worker after a job, the caller for the
     * workers inside */
    long long spin_ns, wait_ns;
} klfast_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                 PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL, NULL, 0, 0, 1, 0, 0, 100000, 20000};

#define KLFAST_LOAD(x, order) __atomic_load_n(&klfast_pool.x, __ATOMIC_##order)
#define KLFAST_STORE(x, v, order) __atomic_store_n(&klfast_pool.x, (v), __ATOMIC_##order)

static inline void klfast_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static double klfast_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

/* Take claims until none is left; the sum of fn's returns. */
static Py_ssize_t klfast_pool_claims(int tid)
{
    klfast_task fn = KLFAST_LOAD(fn, RELAXED);
    void *ctx = KLFAST_LOAD(ctx, RELAXED);
    Py_ssize_t end = KLFAST_LOAD(end, RELAXED), claim = KLFAST_LOAD(claim, RELAXED), i0, sum = 0;
    while ((i0 = __atomic_fetch_add(&klfast_pool.next, claim, __ATOMIC_RELAXED)) < end)
        sum += fn(ctx, i0, end - i0 < claim ? end : i0 + claim, tid);
    return sum;
}

/* Wait until a job newer than generation `seen` is published: its state.
 * Look, yielding the core between looks, for spin_ns; then sleep. */
static unsigned long long klfast_pool_wait(unsigned long long seen)
{
    unsigned long long s;
    double until = klfast_now_ns() + KLFAST_LOAD(spin_ns, RELAXED);
    for (int i = 1;; i++) {
        s = KLFAST_LOAD(state, ACQUIRE);
        if (s / KLFAST_POOL_GEN != seen)
            return s;
        sched_yield();
        if (i % 4 == 0 && klfast_now_ns() > until)
            break;
    }
    pthread_mutex_lock(&klfast_pool.sleep_lock);
    __atomic_add_fetch(&klfast_pool.sleepers, 1, __ATOMIC_SEQ_CST);
    while ((s = KLFAST_LOAD(state, SEQ_CST)) / KLFAST_POOL_GEN == seen)
        pthread_cond_wait(&klfast_pool.wake, &klfast_pool.sleep_lock);
    __atomic_sub_fetch(&klfast_pool.sleepers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&klfast_pool.sleep_lock);
    return s;
}

static void *klfast_pool_worker(void *arg)
{
    unsigned long long seen = (unsigned long long)(uintptr_t)arg, s;
    for (;;) {
        s = klfast_pool_wait(seen);
        seen = s / KLFAST_POOL_GEN;
        /* join this job unless it is closed, full or already replaced */
        while (s / KLFAST_POOL_GEN == seen && !(s & KLFAST_POOL_CLOSED)
               && (int)(s / KLFAST_POOL_JOINED % 32768) < KLFAST_LOAD(max_joined, RELAXED)) {
            if (__atomic_compare_exchange_n(&klfast_pool.state, &s,
                                            s + KLFAST_POOL_JOINED + KLFAST_POOL_INSIDE, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                int tid = 1 + (int)(s / KLFAST_POOL_JOINED % 32768);
                __atomic_add_fetch(&klfast_pool.result, klfast_pool_claims(tid), __ATOMIC_RELAXED);
                s = __atomic_sub_fetch(&klfast_pool.state, KLFAST_POOL_INSIDE, __ATOMIC_SEQ_CST);
                if (s % KLFAST_POOL_JOINED == 0 && KLFAST_LOAD(caller_sleeps, SEQ_CST)) {
                    pthread_mutex_lock(&klfast_pool.sleep_lock);
                    pthread_cond_signal(&klfast_pool.done);
                    pthread_mutex_unlock(&klfast_pool.sleep_lock);
                }
                break;
            }
        }
    }
    return NULL;
}

/* In a forked child the workers are gone and a lock may be held. */
static void klfast_pool_after_fork(void)
{
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    klfast_pool.job_lock = lock;
    klfast_pool.sleep_lock = lock;
    klfast_pool.wake = cond;
    klfast_pool.done = cond;
    klfast_pool.n_workers = 0;
    klfast_pool.sleepers = 0;
    klfast_pool.caller_sleeps = 0;
    klfast_pool.state = klfast_pool.state / KLFAST_POOL_GEN * KLFAST_POOL_GEN;
}

/* Start workers (under job_lock) until there are n; how many there are. */
static int klfast_pool_grow(int n)
{
    static int registered = 0;
    pthread_attr_t attr;
    pthread_t thread;
    sigset_t all, old;
    if (!registered)
        registered = pthread_atfork(NULL, NULL, klfast_pool_after_fork) == 0 ? 1 : -1;
    if (registered < 0 || klfast_pool.n_workers >= n || pthread_attr_init(&attr))
        return registered < 0 ? 0 : klfast_pool.n_workers;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the workers inherit it */
    while (klfast_pool.n_workers < n) {
        uintptr_t seen = (uintptr_t)(KLFAST_LOAD(state, RELAXED) / KLFAST_POOL_GEN);
        if (pthread_create(&thread, &attr, klfast_pool_worker, (void *)seen))
            break;
        klfast_pool.n_workers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return klfast_pool.n_workers;
}

/* Set the spins (tests/c/check_pool.c); the previous ones in spins. */
static void klfast_pool_spins(long long spins[2])
{
    long long worker = KLFAST_LOAD(spin_ns, RELAXED), caller = KLFAST_LOAD(wait_ns, RELAXED);
    KLFAST_STORE(spin_ns, spins[0], RELAXED);
    KLFAST_STORE(wait_ns, spins[1], RELAXED);
    spins[0] = worker;
    spins[1] = caller;
}

static Py_ssize_t klfast_parallel(klfast_task fn, void *ctx, Py_ssize_t begin, Py_ssize_t end,
                                  Py_ssize_t claim, int n_threads)
{
    Py_ssize_t n_claims, sum;
    unsigned long long s;
    int helpers;
    if (claim < 1)
        claim = 1;
    n_claims = end > begin ? (end - begin - 1) / claim + 1 : 0;
    helpers = n_threads - 1;
    if (helpers > KLFAST_POOL_MAX_WORKERS)
        helpers = KLFAST_POOL_MAX_WORKERS;
    if (helpers > n_claims - 1)
        helpers = (int)(n_claims - 1);
    if (helpers < 1 || pthread_mutex_trylock(&klfast_pool.job_lock))
        return fn(ctx, begin, end, 0);
    if (klfast_pool_grow(helpers) < 1) {
        pthread_mutex_unlock(&klfast_pool.job_lock);
        return fn(ctx, begin, end, 0);
    }
    KLFAST_STORE(fn, fn, RELAXED);
    KLFAST_STORE(ctx, ctx, RELAXED);
    KLFAST_STORE(next, begin, RELAXED);
    KLFAST_STORE(end, end, RELAXED);
    KLFAST_STORE(claim, claim, RELAXED);
    KLFAST_STORE(result, 0, RELAXED);
    KLFAST_STORE(max_joined, helpers, RELAXED);
    /* publish: a new generation, open, nobody joined */
    s = KLFAST_LOAD(state, RELAXED);
    KLFAST_STORE(state, (s / KLFAST_POOL_GEN + 1) * KLFAST_POOL_GEN, SEQ_CST);
    if (KLFAST_LOAD(sleepers, SEQ_CST)) {
        pthread_mutex_lock(&klfast_pool.sleep_lock);
        pthread_cond_broadcast(&klfast_pool.wake);
        pthread_mutex_unlock(&klfast_pool.sleep_lock);
    }
    sum = klfast_pool_claims(0);
    /* close: from now on no worker joins; wait for those inside */
    s = __atomic_or_fetch(&klfast_pool.state, KLFAST_POOL_CLOSED, __ATOMIC_ACQ_REL);
    if (s % KLFAST_POOL_JOINED) {
        double until = klfast_now_ns() + KLFAST_LOAD(wait_ns, RELAXED);
        for (int i = 1; (s = KLFAST_LOAD(state, ACQUIRE)) % KLFAST_POOL_JOINED; i++) {
            klfast_pause();
            if (i % 64 == 0 && klfast_now_ns() > until)
                break;
        }
    }
    if (s % KLFAST_POOL_JOINED) { /* a worker inside is slow: sleep until it leaves */
        pthread_mutex_lock(&klfast_pool.sleep_lock);
        KLFAST_STORE(caller_sleeps, 1, SEQ_CST);
        while (KLFAST_LOAD(state, SEQ_CST) % KLFAST_POOL_JOINED)
            pthread_cond_wait(&klfast_pool.done, &klfast_pool.sleep_lock);
        KLFAST_STORE(caller_sleeps, 0, RELAXED);
        pthread_mutex_unlock(&klfast_pool.sleep_lock);
    }
    sum += KLFAST_LOAD(result, RELAXED);
    pthread_mutex_unlock(&klfast_pool.job_lock);
    return sum;
}

#undef KLFAST_LOAD
#undef KLFAST_STORE

#else /* no pthreads: one thread */

static void klfast_pool_spins(long long spins[2])
{
    spins[0] = spins[1] = 0;
}

static Py_ssize_t klfast_parallel(klfast_task fn, void *ctx, Py_ssize_t begin, Py_ssize_t end,
                                  Py_ssize_t claim, int n_threads)
{
    (void)claim;
    (void)n_threads;
    return fn(ctx, begin, end, 0);
}

#endif
#endif
