// SPDX-License-Identifier: GPL-2.0
/*
 * socksplice_testmod: registers one trivial kfunc for sock_ops programs.
 * It proves, before the real splice module exists, that the test kernel's
 * enablement patch and module BTF let a module give sock_ops programs a
 * kfunc: without the patch register_btf_kfunc_id_set() refuses
 * BPF_PROG_TYPE_SOCK_OPS and the module does not load.
 */
#include <linux/bpf.h>
#include <linux/btf.h>
#include <linux/btf_ids.h>
#include <linux/init.h>
#include <linux/module.h>

__bpf_kfunc_start_defs();

__bpf_kfunc u64 socksplice_testmod_add(u64 a, u64 b)
{
	return a + b;
}

__bpf_kfunc_end_defs();

BTF_KFUNCS_START(testmod_kfunc_ids)
BTF_ID_FLAGS(func, socksplice_testmod_add)
BTF_KFUNCS_END(testmod_kfunc_ids)

static const struct btf_kfunc_id_set testmod_kfunc_set = {
	.owner = THIS_MODULE,
	.set = &testmod_kfunc_ids,
};

static int __init testmod_init(void)
{
	return register_btf_kfunc_id_set(BPF_PROG_TYPE_SOCK_OPS, &testmod_kfunc_set);
}

static void __exit testmod_exit(void)
{
}

module_init(testmod_init);
module_exit(testmod_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("socksplice test kfunc for sock_ops programs");
