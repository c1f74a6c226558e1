/* What the kernel tap shares with user space. Mirrored in observer-ebpf/src/lib.rs;
 * a test compiles this header and checks that the two layouts agree. */
#ifndef OBSERVER_TAP_H
#define OBSERVER_TAP_H

#include <linux/types.h>

/* Bytes of packet per ring-buffer record. A packet longer than this (GSO/GRO
 * super-packets on lo reach 64 KiB) is sent as several records, in order. */
#define TAP_CHUNK 2048
/* Chunks per packet: 32 x 2 KiB = 64 KiB, the largest IP packet. */
#define TAP_MAX_CHUNKS 32

/* event flags */
#define TAP_F_EGRESS 0x1
/* The packet was longer than TAP_CHUNK * TAP_MAX_CHUNKS: the tail was not sent. */
#define TAP_F_CUT 0x2

struct tap_event {
	__u64 ts_ns;     /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u32 ifindex;
	__u32 pkt_len;   /* skb->len: the whole packet, from the Ethernet header */
	__u32 pkt_id;    /* per-CPU packet number: chunks of one packet share it */
	__u32 cpu;
	__u16 chunk;     /* index of this chunk */
	__u16 chunks;    /* chunks of this packet */
	__u16 data_len;  /* valid bytes in data */
	__u16 flags;
	__u8 data[TAP_CHUNK];
};

/* Indices of the per-CPU counter array. */
#define TAP_C_PACKETS 0   /* packets sent to user space */
#define TAP_C_CHUNKS 1    /* ring-buffer records written */
#define TAP_C_DROPS 2     /* records lost: ring buffer full */
#define TAP_C_OVERSIZE 3  /* packets longer than the chunks can carry */
#define TAP_C_FILTERED 4  /* TCP packets of other flows, left in the kernel */
#define TAP_C_OTHER 5     /* not IPv4/IPv6 TCP, left in the kernel */
#define TAP_C_MARKED 6    /* flows marked in the kernel at their welcome line */
#define TAP_C_MARK_FAILED 7 /* welcome lines whose flow could not be marked */
#define TAP_C_COUNT 8

/* A TCP flow recognised as JXTA by user space (addresses in network order, IPv4 as
 * IPv4-mapped IPv6, ports in host order). */
struct tap_flow {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
};

#endif
