/* SPDX-License-Identifier: BSD-2-Clause */
/* check-layers fixture: the middle layer, a function and a variable */
int fx_low_get(void);
int fx_leaf_get(void);
int fx_mid_run(void);

int  fx_mid_state;

int
fx_mid_run(void)
{
    return fx_low_get() + fx_leaf_get();
}
