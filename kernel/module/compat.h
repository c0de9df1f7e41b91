/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel interfaces socksplice uses that changed between the kernels
 * it builds against (the patched 6.12 test kernel, Debian's stock 7.x),
 * keyed on the version of the headers it is built with. The only place
 * that reads LINUX_VERSION_CODE (checkpatch flags each use: an out-of-tree
 * module has no one version to be written for).
 */
#ifndef _SOCKSPLICE_COMPAT_H
#define _SOCKSPLICE_COMPAT_H

#include <linux/skbuff.h>
#include <linux/version.h>
#include <net/tcp.h>

/*
 * Older kernels lack what the module is written against (BTF_KFUNCS_START,
 * copy_splice_read, sk_wake_async_rcu); they could not load it either, as
 * sock_ops programs call module kfuncs only since 6.15 (6.12 with the
 * project's patch). Say so instead of failing on the first missing symbol.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 12, 0)
#error "socksplice needs Linux 6.15 or later (sock_ops programs call module kfuncs since 6.15)"
#endif

/* 6.18 added the devmem argument. */
static inline struct ubuf_info *ss_zerocopy_realloc(struct sock *sk, size_t size)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 18, 0)
	return msg_zerocopy_realloc(sk, size, NULL, false);
#else
	return msg_zerocopy_realloc(sk, size, NULL);
#endif
}

/*
 * 7.0 dropped proto->recvmsg's addr_len: the module keeps it internally
 * (MSG_ERRQUEUE reports the address length through it before 7.0) and
 * wraps its recvmsg for the newer proto (proto.c).
 */
#define SS_RECVMSG_ADDR_LEN (LINUX_VERSION_CODE < KERNEL_VERSION(7, 0, 0))

static inline int ss_tcp_recvmsg(struct sock *sk, struct msghdr *msg, size_t len,
				 int flags, int *addr_len)
{
#if SS_RECVMSG_ADDR_LEN
	return tcp_prot.recvmsg(sk, msg, len, flags, addr_len);
#else
	return tcp_prot.recvmsg(sk, msg, len, flags);
#endif
}

#endif /* _SOCKSPLICE_COMPAT_H */
