// Package pcapng captures the frames involved in integrity violations to a
// pcapng file, so that the bytes the kernel handed us can be examined in
// Wireshark next to the flight recorder dump.
//
// # Concept
//
// A [Writer] owns one pcapng file. Each interface xskgate forwards between
// ("outer", "inner") becomes one pcapng interface (Ethernet, snaplen 65535),
// added the first time a frame from it is written. Each [Record] becomes an
// Enhanced Packet Block whose options carry what makes the frame interesting:
// a comment such as "violation=rx_not_in_fill addr=0x1234 desc_len=60
// xdp_len=64", the AF_XDP queue (epb_queue), an identifier correlating the
// frame with flight recorder events (epb_packetid) and, optionally, the XDP
// program's verdict (epb_verdict, type Linux_eBPF_XDP).
//
// # Invariants
//
//   - Files are created with O_EXCL and mode 0600 in a directory created 0700
//     if missing: frames may contain customer traffic, and evidence is never
//     overwritten.
//   - Every Write is flushed to the kernel before it returns, because a
//     violation may be followed by the process dying; Close also fsyncs.
//   - The section header is written with the first frame. A Writer closed
//     without any frame removes its empty file rather than leave an invalid
//     pcapng behind.
//   - Frames longer than 65535 bytes are truncated to the snaplen with the
//     original length kept; comments are truncated to fit a pcapng option.
//
// # Concurrency
//
// A Writer is safe for concurrent use: a mutex serialises writes. Violations
// are rare, so the lock is never contended in practice, and Write, which
// formats options and makes a write(2), is not meant for the per-frame path.
package pcapng
