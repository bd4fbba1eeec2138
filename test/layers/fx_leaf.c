/* SPDX-License-Identifier: BSD-2-Clause */
/* check-layers fixture: the bottom layer; -DUP reads a variable of the
 * middle layer, -DSAME calls fx_low.c of its own layer */
extern int fx_mid_state;
int fx_low_get(void);
int fx_leaf_get(void);

int
fx_leaf_get(void)
{
#if defined(UP)
    return fx_mid_state;
#elif defined(SAME)
    return fx_low_get();
#else
    return 2;
#endif
}
