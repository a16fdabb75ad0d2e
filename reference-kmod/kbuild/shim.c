// SPDX-License-Identifier: GPL-2.0-only
/*
 * C side of a klp-conform reference livepatch module. The builder instantiates this template once
 * per variant (the name, description and livepatch modinfo placeholders replaced); the Rust
 * object of the variant provides klp_variant_init() and klp_variant_exit(). The variant's C glue,
 * if any (variants/NAME.c: module parameters), is appended after this text.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/livepatch.h>
#include <linux/gfp.h>
#include <linux/sched.h>
#include <linux/string.h>

/* gcc re-checks every struct layout that bindgen (clang) computed for the Rust side. */
#include "klp_layout.h"

/* The klp layer's C helpers: what differs between kernel lines (see klp_helpers.h). */
#include "klp_helpers.c"

/* Constants src/klp.rs hard-codes (they are enums bindgen is not asked for). */
_Static_assert(MODULE_STATE_LIVE == 0 && MODULE_STATE_COMING == 1 && MODULE_STATE_GOING == 2 &&
	       MODULE_STATE_UNFORMED == 3, "klp.rs: enum module_state");
_Static_assert(sizeof(bool) == 1 && sizeof(int) == 4, "klp.rs: parameter storage types");

int klp_variant_init(void);
void klp_variant_exit(void);

static int __init klp_ref_init(void)
{
	return klp_variant_init();
}

static void __exit klp_ref_exit(void)
{
	klp_variant_exit();
}

module_init(klp_ref_init);
module_exit(klp_ref_exit);
MODULE_LICENSE("GPL");
@LIVEPATCH_MODINFO@
MODULE_DESCRIPTION("@DESCRIPTION@");
