// Package protect is xskgate's TCP protection stage: an engine.Inspector
// that decides per frame whether to forward, bounce or drop it, to
// mitigate ACK/RST/FIN and SYN floods in the manner of Cloudflare's
// flowtrackd (Advanced TCP Protection) with a Linux-SYNPROXY-style
// challenge.
//
// # Model
//
// Each frame is parsed (packet.Parse into a per-worker Packet). Non-IP
// (ARP), non-TCP (ICMP, ND, UDP) and TCP to unprotected prefixes pass
// untouched: this stage is TCP protection only. The one exception is an
// ICMP error quoting a SYN-proxied segment, which passes with the quoted
// sequence number translated back (icmp.go), or the endpoint would ignore
// it and path MTU discovery would black-hole. Malformed frames are
// dropped and counted by parser error while the stage is enabled. Protected
// TCP goes through the flow table (flow.Table.Track) and then the rules of
// the most specific destination scope (prefixes, lists and scopes are
// tries, rules.go):
//
//   - blocklisted sources are dropped; allowlisted ones skip all rules
//     (block wins over allow: a block is an explicit operator decision);
//   - out-of-state: an inbound segment the tracker rejects (not_found,
//     out_of_sequence, unexpected, already_closed, invalid_flags,
//     wrong_direction, or a TCP fragment) is dropped only while such
//     segments toward the scope exceed rate/burst (rate 0: always), as ATP
//     does, since routing noise produces a few of them all the time;
//   - SYN flood: SYNs above the scope's or a source's rate are either
//     dropped once and admitted on retransmission (retransmit; retrans.go
//     sizes its memory of first SYNs so that a flood cannot push a
//     recorded one out) or answered with a cookie SYN-ACK (challenge);
//   - table full: a new flow the full flow table refuses is challenged too
//     (on_table_full: challenge, the default), or passed untracked, or
//     dropped.
//
// Outbound segments (from the protected side) are tracked and translated
// but never dropped by out-of-state rules: the attacker is outside, and our
// state about a server's own connection can be stale (restart, eviction),
// which would turn a drop into an outage. Monitor mode counts what would
// be done (verdict) and passes everything (outcome); disabled turns a
// protection off; the global switch off keeps tracking and translation so
// that switching on later loses no flow.
//
// # SYN proxy
//
// The cookie SYN-ACK is built in place in the SYN's frame and bounced. Its
// ISN carries a SipHash MAC over the tuple, client ISN and a 16 s counter,
// plus the client's MSS index, window scale and SACK-permitted (see
// cookie.go); no timestamps are offered, so no TS translation is needed. It
// advertises window 0 (syn_proxy.window), so the client sends nothing the
// server cannot take yet. A valid cookie ACK is rewritten in place into the
// SYN to the server and a half-open flow is inserted (flow.Table.Insert)
// whose SeqAdjust holds the cookie ISN as a marker. The server's SYN-ACK is
// rewritten into the ACK that completes its handshake and bounced back into
// inner; the real delta (server ISN − cookie ISN) replaces the marker
// (SetSeqAdjust), and a window update carrying the server's window goes to
// the client in a second frame, a spare one the engine offers
// (engine.Extra; window.go). From then on client acks and SACK edges gain
// delta and server seqs lose it, with incremental checksum updates. A
// client segment that arrives before the server's SYN-ACK (a zero-window
// probe, or data under a non-zero SYN-ACK window) means the SYN may have
// been lost: it becomes the SYN again (proxy_syn_resent), the proxy having
// no timer of its own; one that does not ack the cookie is dropped
// (proxy_pending). A client that sends nothing (the server speaks first)
// therefore waits for a lost SYN until it gives up. The proxy's window
// scale must match the servers' (the client learns it from the proxy); the
// proxy does not rescale windows.
// Cookie SYN-ACKs are rate-limited globally so the gate is no reflector.
//
// # Invariants
//
// The hot path allocates nothing: per-worker scratch is sized at New and
// indexed by the worker argument; meters are single atomic words (GCRA)
// updated with CAS; time is read once per batch. Counters are per worker,
// written by their worker only, summed on scrape, with bounded label sets
// (reasons, verdicts, parser errors, rule names). Drop log lines are
// sampled by a limiter and are the only allocation, at most Log.Rate per
// second.
//
// # Concurrency
//
// Inspect is called concurrently by every worker, each with its own index;
// the two directions of a connection may be on different workers, which
// the shared flow table serialises. Reload swaps an immutable rule set
// through an atomic.Pointer: a batch uses one version throughout, and the
// flow table is untouched. Meters restart empty after a reload; per-rule
// counters persist by rule name.
package protect
