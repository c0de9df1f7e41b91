/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel interfaces socksplice uses that changed between the kernels
 * it builds against (the patched 6.12 test kernel, Debian's stock 7.x).
 * Kbuild tests the headers for each change and defines SS_ZC_DEVMEM and
 * SS_RECVMSG_ADDR_LEN; nothing here reads a version number.
 */
#ifndef _SOCKSPLICE_COMPAT_H
#define _SOCKSPLICE_COMPAT_H

#include <linux/btf_ids.h>
#include <linux/skbuff.h>
#include <net/tcp.h>

/*
 * Older kernels lack what the module is written against (BTF_KFUNCS_START,
 * copy_splice_read, sk_wake_async_rcu); they could not load it either, as
 * sock_ops programs call module kfuncs only since 6.15 (6.12 with the
 * project's patch). Say so instead of failing on the first missing symbol.
 */
#ifndef BTF_KFUNCS_START
#error "socksplice needs Linux 6.15 or later (sock_ops programs call module kfuncs since 6.15)"
#endif

static inline struct ubuf_info *ss_zerocopy_realloc(struct sock *sk, size_t size)
{
#ifdef SS_ZC_DEVMEM
	return msg_zerocopy_realloc(sk, size, NULL, false);
#else
	return msg_zerocopy_realloc(sk, size, NULL);
#endif
}

/*
 * Without addr_len in proto->recvmsg (7.0 on) the module keeps it
 * internally (MSG_ERRQUEUE reports the address length through it before
 * 7.0) and wraps its recvmsg for the newer proto (proto.c).
 */
static inline int ss_tcp_recvmsg(struct sock *sk, struct msghdr *msg, size_t len,
				 int flags, int *addr_len)
{
#ifdef SS_RECVMSG_ADDR_LEN
	return tcp_prot.recvmsg(sk, msg, len, flags, addr_len);
#else
	return tcp_prot.recvmsg(sk, msg, len, flags);
#endif
}

#endif /* _SOCKSPLICE_COMPAT_H */
