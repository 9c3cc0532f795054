// Package xdpprog builds, loads and attaches the XDP program that steers
// every received frame to the AF_XDP socket bound on the frame's RX queue.
//
// The program is restricted C (bpf/steer.c) compiled by bpf2go; the
// object and its Go bindings are committed, so building needs no clang, and
// `go generate` rebuilds them (clang and libbpf-dev from Debian;
// TestObjectsCurrent catches a stale object). It grew past what reads well
// as cilium/ebpf asm when it gained the first line (FirstLine). Per frame it
//
//  0. on the outer interface, runs the first line (see FirstLine);
//  1. puts a Meta record (magic, frame length, per-queue sequence number,
//     queue index, all little-endian u32) with the frame, the way the
//     Carrier says: in the XDP metadata area (bpf_xdp_adjust_meta), in
//     front of the frame (bpf_xdp_adjust_head), or not at all;
//  2. returns bpf_redirect_map(xskmap, rx_queue_index, XDP_PASS).
//
// Because the redirect's fallback action is XDP_PASS, a queue with no
// socket registered behaves as if no program were attached: traffic keeps
// flowing to the kernel stack while sockets come and go.
//
// # Carriers
//
// Kernels differ in which helpers an XDP program may call (some Linux 6.18
// builds refuse bpf_xdp_adjust_meta at load), and drivers in whether
// metadata works at run time. ChooseCarrier probes the kernel; Load builds
// the variant. In AF_XDP copy mode the kernel copies from data_meta, so a
// metadata record ends exactly at the RX descriptor's addr in the UMEM; a
// head record is the first MetaSize bytes of the descriptor, which user
// space strips before the frame goes anywhere. Carrier.Locate reads either.
// When bpf_xdp_adjust_meta fails at run time the meta variant prepends the
// record instead (HeadMagic tells it apart); when no record fits at all
// the frame is dropped and counted (Counters).
//
// The sequence counter is a plain, non-atomic read-modify-write on a
// per-queue ARRAY slot. That is deliberate: NAPI runs one queue on one CPU
// at a time, so the counter is exact as long as that serialisation holds,
// and a repeated or skipped value seen in user space is evidence that it
// did not (or that frames were lost between the program and the socket).
// Program.Sequence reads the counter for reconciliation.
//
// # Invariants
//
//   - One Program per interface. Its XSKMAP is keyed by queue index, and
//     queue indices of different interfaces collide.
//   - A Program is attached with a bpf_link (never via netlink), so the
//     attachment is owned by a file descriptor: closing the Attachment, or
//     the death of the process, detaches it. Nothing is left behind.
//   - Closing the Program does not detach it: the link holds its own
//     reference to the program and maps. Close Attachments first.
//
// # Privileges
//
// Loading needs CAP_BPF and CAP_PERFMON (the verifier allows the
// data_end - data subtraction only to CAP_PERFMON holders), attaching needs
// CAP_NET_ADMIN; root has all three. Permission errors are one line that
// names this fix.
//
// # Concurrency
//
// Register, Unregister, Sequence, Attach and Attachment.Close are single
// syscalls and may be called from any goroutine. Program.Close must not
// race with other methods of the same Program. Attach resolves the ifindex
// in the network namespace of the calling OS thread.
package xdpprog
