// Package packet parses the headers of Ethernet frames on the xskgate hot
// path and provides the Internet checksum helpers the SYN proxy needs to
// rewrite frames in place.
//
// # Concept
//
// [Packet] is a parsed view over a frame held in UMEM: it records offsets,
// lengths and decoded header fields, never copies of the bytes. A worker owns
// one Packet and calls [Packet.Parse] for every frame it receives, so parsing
// performs no heap allocation at all (addresses are [netip.Addr] values built
// with AddrFrom4/AddrFrom16, which do not allocate for IPv4 or zone-less
// IPv6).
//
// The parser understands Ethernet II with up to two VLAN tags (802.1Q 0x8100
// and 802.1ad 0x88a8), IPv4 (options skipped, not interpreted), IPv6 with its
// extension-header chain (hop-by-hop, routing, fragment, destination options
// and AH), and TCP (options decoded), UDP, ICMPv4 and ICMPv6; [Quoted]
// decodes the invoking packet an ICMP error carries (quoted.go), possibly
// truncated, for the SYN proxy to translate. Anything else
// above IP is "unknown L4": not an error, L4Off is -1. Non-IP EtherTypes
// (ARP, LLDP, ...) are not errors either: IPVersion is 0.
//
// # Invariants
//
// Frames come from the Internet, so a malformed frame is ordinary input, not
// a bug: Parse returns one of the [Error] constants and never panics. Every
// length field is checked against the bytes actually present before it is
// used, and the IP-declared length (not the frame length) bounds everything
// above L3, so trailing Ethernet padding is legal and ignored. When Parse
// returns nil, all offsets satisfy
//
//	L3Off <= L3Off+IPHeaderLen <= L4Off (if >= 0) <= PayloadOff
//	PayloadOff+PayloadLen <= L3Off+IPTotalLen <= len(frame)
//
// When Parse returns an error the fields hold whatever had been decoded up to
// the failure; callers must not act on them (they are useful for debugging
// only).
//
// [Error] is a uint8, so returning it through the error interface does not
// allocate (the runtime keeps static boxes for single-byte values), and it
// doubles as an index into a [NumErrors]uint64 drop-counter array, with
// [Error.Name] as the stable metric label.
//
// # Concurrency
//
// A Packet is not safe for concurrent use; give each worker its own. Parse
// never retains the frame slice beyond the call other than through the
// offsets it records, and never writes to it. The checksum helpers are pure
// functions.
package packet
