// SPDX-License-Identifier: GPL-2.0
/*
 * socksplice module entry: the two kfuncs sock_ops programs call, and the
 * counters. Unloading is refused while any socket or prepared listener
 * still runs our code: each holds a module reference.
 */
#include <linux/bpf.h>
#include <linux/btf.h>
#include <linux/btf_ids.h>
#include <linux/filter.h>
#include <linux/init.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <net/tcp.h>

#include "socksplice.h"

DEFINE_PER_CPU(struct ss_stats, ss_stats);
atomic_long_t ss_live_socks, ss_live_pairs, ss_live_ring_bytes;

__bpf_kfunc_start_defs();

/*
 * The context argument is declared with the program's own context type:
 * the verifier hands over the kernel's struct bpf_sock_ops_kern, and
 * kernels before 6.16 match a kfunc's context argument by that name only.
 */

/*
 * bpf_sock_splice_pair - pair this socket with its peer at ESTABLISHED.
 * Returns 0 when the socket now waits for its peer or is paired, 1 when it
 * already was (programs on two cgroup levels), <0 when it stays plain TCP.
 */
__bpf_kfunc int bpf_sock_splice_pair(struct bpf_sock_ops *ctx,
				     struct bpf_sock_splice_args *args, u32 args__sz)
{
	struct bpf_sock_ops_kern *skops = (struct bpf_sock_ops_kern *)ctx;
	struct sock *sk = skops->sk;
	bool passive;
	int fam, err;

	/*
	 * A program built against another ABI would be misread: refuse it,
	 * with a reason of its own (the program counts -EPROTO apart).
	 */
	if (args__sz < sizeof(args->abi_version) ||
	    args->abi_version != SS_ABI_VERSION || args__sz != sizeof(*args)) {
		ss_count(abi_mismatch, 1);
		return -EPROTO;
	}
	if (!sk || !sk_fullsock(sk) ||
	    sk->sk_protocol != IPPROTO_TCP || sk->sk_type != SOCK_STREAM)
		return -EINVAL;
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return -EINVAL;
	passive = skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB;
	fam = ss_family_of(sk);
	if (passive)
		err = smp_load_acquire(&ss_fam[fam].ready) ? 0 : -EOPNOTSUPP;
	else
		err = ss_prepare_family(sk, fam);
	if (!err)
		err = ss_pair_sock(sk, args, passive, fam);
	if (err < 0)
		ss_count(refused, 1);
	return err;
}

/*
 * bpf_sock_splice_listen - prepare a listener at TCP_LISTEN_CB so that the
 * sockets it accepts can be paired.
 */
__bpf_kfunc int bpf_sock_splice_listen(struct bpf_sock_ops *ctx)
{
	struct bpf_sock_ops_kern *skops = (struct bpf_sock_ops_kern *)ctx;
	struct sock *sk = skops->sk;

	if (!sk || !sk_fullsock(sk) || sk->sk_protocol != IPPROTO_TCP ||
	    skops->op != BPF_SOCK_OPS_TCP_LISTEN_CB || sk->sk_state != TCP_LISTEN ||
	    !sk->sk_socket)
		return -EINVAL;
	return ss_prepare_listener(sk);
}

__bpf_kfunc_end_defs();

BTF_KFUNCS_START(ss_kfunc_ids)
BTF_ID_FLAGS(func, bpf_sock_splice_pair)
BTF_ID_FLAGS(func, bpf_sock_splice_listen)
BTF_KFUNCS_END(ss_kfunc_ids)

static const struct btf_kfunc_id_set ss_kfunc_set = {
	.owner = THIS_MODULE,
	.set = &ss_kfunc_ids,
};

/* /sys/module/socksplice/parameters/stats: one "name value" per line. */
static int ss_stats_get(char *buf, const struct kernel_param *kp)
{
	struct ss_stats t = {};
	int cpu;

	for_each_possible_cpu(cpu) {
		struct ss_stats *s = per_cpu_ptr(&ss_stats, cpu);

		t.paired += s->paired;
		t.refused += s->refused;
		t.ring_bytes += s->ring_bytes;
		t.ring_full_waits += s->ring_full_waits;
		t.busy_poll_hits += s->busy_poll_hits;
		t.busy_polls += s->busy_polls;
		t.abi_mismatch += s->abi_mismatch;
	}
	return sysfs_emit(buf, "paired %llu\nrefused %llu\nring_bytes %llu\n"
			  "ring_full_waits %llu\nbusy_polls %llu\nbusy_poll_hits %llu\n"
			  "abi_mismatch %llu\n"
			  "live_socks %ld\nlive_pairs %ld\nlive_ring_bytes %ld\n",
			  t.paired, t.refused, t.ring_bytes, t.ring_full_waits,
			  t.busy_polls, t.busy_poll_hits, t.abi_mismatch,
			  atomic_long_read(&ss_live_socks),
			  atomic_long_read(&ss_live_pairs), atomic_long_read(&ss_live_ring_bytes));
}

static const struct kernel_param_ops ss_stats_ops = {
	.get = ss_stats_get,
};
module_param_cb(stats, &ss_stats_ops, NULL, 0444);
MODULE_PARM_DESC(stats, "counters: paired connections, refused calls, ring bytes, ring-full waits, busy-poll spins and hits, calls of another ABI");

/* The plugin compares it with its programs' before it loads them. */
static unsigned int abi_version = SS_ABI_VERSION;
module_param(abi_version, uint, 0444);
MODULE_PARM_DESC(abi_version, "SS_ABI_VERSION: the bpf_sock_splice_args layout this module reads");

static int __init ss_init(void)
{
	int err = register_btf_kfunc_id_set(BPF_PROG_TYPE_SOCK_OPS, &ss_kfunc_set);

	/* Before 6.15 the verifier has no kfunc hook for sock_ops programs. */
	if (err == -EINVAL)
		pr_err("socksplice: this kernel cannot call module kfuncs from sock_ops programs (needs Linux 6.15)\n");
	return err;
}

static void __exit ss_exit(void)
{
	/* Nothing left: every socket with our proto holds a reference. */
}

module_init(ss_init);
module_exit(ss_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("socksplice: same-host TCP payload through a per-direction ring");
