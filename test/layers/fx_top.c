/* SPDX-License-Identifier: BSD-2-Clause */
/* check-layers fixture: the top layer */
int fx_mid_run(void);
void fx_top_wake(void);

void
fx_top_wake(void)
{
}

int
fx_top_main(void)
{
    return fx_mid_run();
}
