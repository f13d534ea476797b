/* The end of a row that fills no whole block, for the element type of
 * engine/element.h: included by engine/level.h before the row loops. No
 * include guard.
 *
 * The divergences read a row once: with AVX2 and AVX-512 they load its tail
 * in part (load_part: the CPU reads only the elements that exist); elsewhere
 * the tail is copied into a padded block first. The forms kernel reads its
 * vectors with part_vector, which pads them in registers. */

/* buf[0..len) = the n elements at x, then copies of pad; returns buf. */
KLF_INLINE const S *F(padded_tail)(S *buf, int len, const S *x, int n, S pad) {
    for (int l = n; l < len; l++) buf[l] = pad;
    memcpy(buf, x, (size_t)n * sizeof(S));
    return buf;
}

/* valid[s] for the native vectors of a 128-byte block (128 / KLF_VBYTES of
 * them): the lanes of its first n elements. */
KLF_INLINE void F(block_tail_masks)(M *valid, int n) {
    const M lane = {IOTA};
    for (int s = 0; s < 128 / KLF_VBYTES; s++) valid[s] = (M)(lane + s * LANES < n);
}

/* The vector at x of which only the first n elements (any int: n >= LANES
 * is a whole vector, n <= 0 none) are read; the lanes past them hold pad.
 * The same values as a vector of a padded_tail block, without the copy
 * through memory (a vector read over element-wide stores waits for them:
 * with a copy per pass, a loss row of 10 took 230 ns, without 124 ns). */
KLF_INLINE V F(part_vector)(const S *x, int n, T pad) {
    V v;
    if (n >= LANES) {
        LOADV(&v, x);
        return v;
    }
    const M lane = {IOTA};
    n = n > 0 ? n : 0;
    return VSEL((M)(lane < n), LOAD_PART(x, n), BCAST(pad));
}

#if KLF_ELEMENT_BITS != 16
/* padded_tail's block (len a multiple of LANES), written a vector at a time:
 * a vector read from it soon after is forwarded from its store (one over
 * element-wide stores waits for them to reach the cache). */
KLF_INLINE const T *F(padded_block)(T *buf, int len, const T *x, int n, T pad) {
    for (int i = 0; i < len; i += LANES) {
        V v = F(part_vector)(x + i, n - i, pad);
        memcpy(buf + i, &v, sizeof(V));
    }
    return buf;
}
#endif
