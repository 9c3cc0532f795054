// Package xdpprog builds, loads and attaches the XDP program that steers
// every received frame to the AF_XDP socket bound on the frame's RX queue.
//
// The program is assembled in Go with cilium/ebpf's asm package: there is
// no C source, no clang and no object file to keep in sync. Per frame it
//
//  1. reserves MetaSize bytes of XDP metadata in front of the packet with
//     bpf_xdp_adjust_meta and writes a Meta record (magic, frame length,
//     per-queue sequence number, queue index), all little-endian u32;
//  2. returns bpf_redirect_map(xskmap, rx_queue_index, XDP_PASS).
//
// Because the redirect's fallback action is XDP_PASS, a queue with no
// socket registered behaves as if no program were attached: traffic keeps
// flowing to the kernel stack while sockets come and go.
//
// # Metadata
//
// In AF_XDP copy mode the kernel copies the frame starting at data_meta, so
// the Meta record ends exactly at the RX descriptor's addr in the UMEM;
// ParseMeta reads umem[addr-MetaSize:addr]. If bpf_xdp_adjust_meta fails
// (a driver without metadata support) the frame is still redirected but
// carries no record and the sequence counter is not advanced; Meta.Valid
// tells the two cases apart.
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
