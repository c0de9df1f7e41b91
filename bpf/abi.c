//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/* Never loaded: this object exists so that every type and constant of the
 * ABI header reaches Go. clang emits BTF only for what is used, so each is
 * anchored by a variable here; bpf2go turns the types into Go (abi_bpfel.go)
 * and abigen the enums into constants (abi_const.go, conf/limits_gen.go). */
#include <socksplice/abi.h>

enum ss_abi ss_abi_anchor;
enum ss_limits ss_limits_anchor;
enum ss_counter_layout ss_counter_layout_anchor;
enum ss_policy_flags ss_policy_flags_anchor;
struct bpf_sock_splice_args ss_args_anchor;
struct ss_policy ss_policy_anchor;
struct ss_local_key ss_local_key_anchor;
struct ss_domain_key ss_domain_key_anchor;
struct ss_pair_key ss_pair_key_anchor;
struct ss_counters ss_counters_anchor;
struct ss_ns_counters ss_ns_counters_anchor;
