// SPDX-License-Identifier: GPL-2.0
/*
 * socksplice module entry: the two kfuncs sock_ops programs call, and the
 * counters. Unloading is refused while any socket can still run our code:
 * a socket file with our proto_ops, and a prepared listener's child not
 * yet accepted, each hold a module reference that core code drops after
 * our last function for it has returned (__sock_release, sk_prot_free).
 * Sockets torn down (closed, disconnected, in TIME_WAIT) run TCP's own
 * proto and hold nothing.
 */
#include <linux/bpf.h>
#include <linux/btf.h>
#include <linux/btf_ids.h>
#include <linux/filter.h>
#include <linux/init.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/rcupdate.h>
#include <linux/sysfs.h>
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

/**
 * bpf_sock_splice_pair() - pair a TCP socket with its peer at ESTABLISHED
 * @ctx: the sock_ops context of BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB or
 *       BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB
 * @args: what the program knows: its ABI version, this socket's netns
 *        cookie and tuple (checked against the socket), the peer's netns
 *        cookie (from the plugin's maps), busy-poll and ring size; flags
 *        must be zero
 * @args__sz: sizeof(*@args) of the program's ABI
 *
 * The first end waits for its peer; the second links both if each is the
 * other's peer (netns cookies as claimed, sequence numbers that agree).
 * From then on their payload moves through one ring per direction.
 *
 * Context: softirq or process context, with the socket locked.
 * Return: 0 when the socket now waits for its peer or is paired, 1 when it
 * already was (programs on two cgroup levels), <0 when it stays plain TCP:
 * -EPROTO another ABI version, -EINVAL bad arguments or forged keys,
 * -EALREADY payload already moved, -EBUSY another user of the socket
 * (sockmap, a ULP, repair), -ENOSPC the pending table is full, -ENOMEM.
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
	if (args->flags) {
		ss_count(forged, 1);
		return -EINVAL;
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
		/* Pairs with ss_prepare_family's release of the built copies. */
		err = smp_load_acquire(&ss_fam[fam].ready) ? 0 : -EOPNOTSUPP;
	else
		err = ss_prepare_family(sk, fam);
	if (!err)
		err = ss_pair_sock(sk, args, passive, fam);
	if (err < 0)
		ss_count(refused, 1);
	return err;
}

/**
 * bpf_sock_splice_listen() - prepare a listener so its children can pair
 * @ctx: the sock_ops context of BPF_SOCK_OPS_TCP_LISTEN_CB
 *
 * Accepted sockets inherit the listener's proto and proto_ops: preparing
 * the listener is how a passive socket gets them before it exists.
 *
 * Context: process context (listen()), with the socket locked.
 * Return: 0 when prepared, 1 when it already was, <0 when its children
 * stay plain TCP.
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

/*
 * The counters, one table: per-CPU event counts summed on read, and the
 * live gauges. parameters/stats prints them all; counters/NAME one each, in
 * a kobject of its own under the module's (whose sysfs ops expect module
 * attributes).
 */
struct ss_counter {
	struct kobj_attribute attr;
	size_t off;		/* in struct ss_stats, unless gauge */
	atomic_long_t *gauge;
};

static u64 ss_counter_read(const struct ss_counter *c)
{
	u64 t = 0;
	int cpu;

	if (c->gauge)
		return atomic_long_read(c->gauge);
	for_each_possible_cpu(cpu)
		t += *(u64 *)((char *)per_cpu_ptr(&ss_stats, cpu) + c->off);
	return t;
}

static ssize_t ss_counter_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n",
			  ss_counter_read(container_of(attr, struct ss_counter, attr)));
}

#define SS_COUNTER(f) { .attr = { .attr = { .name = #f, .mode = 0444 }, \
				 .show = ss_counter_show }, \
			.off = offsetof(struct ss_stats, f) }
#define SS_GAUGE(g) { .attr = { .attr = { .name = #g, .mode = 0444 }, \
				.show = ss_counter_show }, \
		      .gauge = &ss_##g }
static struct ss_counter ss_counters[] = {
	SS_COUNTER(paired), SS_COUNTER(refused), SS_COUNTER(ring_bytes),
	SS_COUNTER(ring_full_waits), SS_COUNTER(busy_polls), SS_COUNTER(busy_poll_hits),
	SS_COUNTER(busy_poll_skips),
	SS_COUNTER(abi_mismatch), SS_COUNTER(forged), SS_COUNTER(peer_mismatch),
	SS_COUNTER(pending_full), SS_COUNTER(mem_waits),
	SS_GAUGE(live_socks), SS_GAUGE(live_pairs), SS_GAUGE(live_ring_bytes),
};

#undef SS_COUNTER
#undef SS_GAUGE

/* /sys/module/socksplice/parameters/stats: one "name value" per line. */
static int ss_stats_get(char *buf, const struct kernel_param *kp)
{
	int i, n = 0;

	for (i = 0; i < ARRAY_SIZE(ss_counters); i++)
		n += sysfs_emit_at(buf, n, "%s %llu\n", ss_counters[i].attr.attr.name,
				   ss_counter_read(&ss_counters[i]));
	return n;
}

static const struct kernel_param_ops ss_stats_ops = {
	.get = ss_stats_get,
};
module_param_cb(stats, &ss_stats_ops, NULL, 0444);
MODULE_PARM_DESC(stats, "all counters, one \"name value\" per line (also one file each in counters/)");

module_param_named(max_pending, ss_max_pending, uint, 0644);
MODULE_PARM_DESC(max_pending, "sockets that may wait for their peer at once; beyond, flows stay TCP (counted in pending_full)");

static struct kobject *ss_counters_kobj;
static struct attribute *ss_counter_attrs[ARRAY_SIZE(ss_counters) + 1];

static const struct attribute_group ss_counter_group = {
	.attrs = ss_counter_attrs,
};

static int ss_counters_add(void)
{
	int i, err;

	for (i = 0; i < ARRAY_SIZE(ss_counters); i++)
		ss_counter_attrs[i] = &ss_counters[i].attr.attr;
	ss_counters_kobj = kobject_create_and_add("counters", &THIS_MODULE->mkobj.kobj);
	if (!ss_counters_kobj)
		return -ENOMEM;
	err = sysfs_create_group(ss_counters_kobj, &ss_counter_group);
	if (err)
		kobject_put(ss_counters_kobj);
	return err;
}

static void ss_counters_remove(void)
{
	sysfs_remove_group(ss_counters_kobj, &ss_counter_group);
	kobject_put(ss_counters_kobj);
}

/* The plugin compares it with its programs' before it loads them. */
static unsigned int abi_version = SS_ABI_VERSION;
module_param(abi_version, uint, 0444);
MODULE_PARM_DESC(abi_version, "SS_ABI_VERSION: the bpf_sock_splice_args layout this module reads");

static int __init ss_init(void)
{
	int err;

	ss_pending_init();
	err = ss_counters_add();
	if (err)
		return err;
	err = register_btf_kfunc_id_set(BPF_PROG_TYPE_SOCK_OPS, &ss_kfunc_set);
	/* Before 6.15 the verifier has no kfunc hook for sock_ops programs. */
	if (err == -EINVAL)
		pr_err("socksplice: this kernel cannot call module kfuncs from sock_ops programs (needs Linux 6.15)\n");
	if (err)
		ss_counters_remove();
	return err;
}

static void __exit ss_exit(void)
{
	/* No socket holds us any more; the frees they queued may still
	 * run our callbacks.
	 */
	rcu_barrier();
	ss_counters_remove();
}

module_init(ss_init);
module_exit(ss_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("socksplice: same-host TCP payload through a per-direction ring");
