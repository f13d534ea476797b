/* y = exp(x) (fn 0: plain, 1: wide) or log(x) (fn 2), lane by lane, with the
 * math layer of this level: the tests' window on the vector math (reached
 * through klfast._diagnostics), and the logs of klfast._pairwise's
 * products. For the element type of engine/element.h.
 * No include guard. */
static void ROW_FN(vector_math)(int fn, const T *x, T *y, ptrdiff_t n) {
    T buf[LANES];
    V v;
    ptrdiff_t i = 0;
    for (; i + LANES <= n; i += LANES) { /* whole vectors, straight from x to y */
        memcpy(&v, x + i, sizeof(V));
        v = fn == 2 ? LOG(v) : fn == 1 ? EXP(v, 1) : EXP(v, 0);
        memcpy(y + i, &v, sizeof(V));
    }
    for (; i < n; i += LANES) { /* the tail, padded with 1 (log) or 0 */
        int m = n - i < LANES ? (int)(n - i) : LANES;
        for (int l = 0; l < LANES; l++) buf[l] = l < m ? x[i + l] : (T)(fn == 2);
        memcpy(&v, buf, sizeof(V));
        v = fn == 2 ? LOG(v) : fn == 1 ? EXP(v, 1) : EXP(v, 0);
        memcpy(buf, &v, sizeof(V));
        memcpy(y + i, buf, (size_t)m * sizeof(T));
    }
}
