/* SPDX-License-Identifier: BSD-2-Clause */
/* check-layers fixture: the bottom layer; -DUP calls the top layer,
 * -DSAME calls fx_leaf.c of its own layer */
void fx_top_wake(void);
int fx_leaf_get(void);
int fx_low_get(void);

int
fx_low_get(void)
{
#if defined(UP)
    fx_top_wake();
#endif
#if defined(SAME)
    return fx_leaf_get();
#else
    return 1;
#endif
}
