/* The end of a row that fills no whole block, for the element type of
 * engine/element.h: included by engine/level.h before the row loops. No
 * include guard.
 *
 * The divergences read a row once: with AVX2 and AVX-512 they load its tail
 * in part (load_part: the CPU reads only the elements that exist); elsewhere,
 * and in the losses, whose three passes read the tail again and write its
 * gradient back, the tail is copied into a padded block first. */

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
