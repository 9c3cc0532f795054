// Package flow is xskgate's TCP flow table: one entry per connection, keyed
// by the normalised 4-tuple, holding conntrack-style state and the window
// tracking data of both directions.
//
// # Model
//
// The gate sees both directions of every connection, so the tracker follows
// Linux conntrack (net/netfilter/nf_conntrack_proto_tcp.c, 6.1) rather than
// a one-way heuristic: tcp_error's flag check, the tcp_conntracks transition
// table indexed by direction and flag class, tcp_in_window's bounds I–IV
// with per-direction td_end/td_maxend/td_maxwin/td_scale, RST validation
// against the peer's highest ACK, SYN reopening of TIME_WAIT and CLOSE,
// simultaneous open, and mid-stream pickup with liberal window checks. The
// function comments name the conntrack code they follow and say where and
// why this package departs from it.
//
// Track returns a Verdict (Pass or Drop, a Reason and the flow's state). The
// table decides nothing: monitor mode, thresholds and rules belong to the
// caller, who may forward a segment the table would drop.
//
// # Memory
//
// New allocates everything: S shards (a power of two, about one per 16K
// flows), each an open-addressing index of uint32 slots (16-bit hash tag,
// 16-bit entry number) at no more than 50% load, and an array of 104-byte
// entries with a free list. Shards get 4σ of headroom over Capacity/S so a
// uniformly hashed load fills the table, not one shard. At 1M flows this is
// about 116 bytes per flow (see MemoryPerFlow and TestMemoryPerFlow). Track,
// Lookup, Insert and Expire do not allocate.
//
// When a shard is full, a new flow evicts, from a sample of 16 entries at a
// clock hand, an expired entry, else a closing one (conntrack's
// tcp_can_early_drop states), else an unassured one (handshake not
// completed, or a pickup never answered), earliest deadline first. If all
// sampled flows are assured and open the new flow is refused with
// ReasonTableFull. Both outcomes are counted in Stats.
//
// # Performance
//
// A lookup hashes the key (a keyed wyhash-style mix, no allocation), reads
// one index line and the entry's first 44 bytes (key, state, deadline), which
// cross a line boundary for 5 entries in 8. With 1M flows the table (~120 MB)
// is far larger than the caches, so a lookup is two dependent DRAM misses;
// tables of 8 MiB and more are mapped with MADV_HUGEPAGE so those misses do
// not also miss the TLB. On the 2-vCPU EPYC VM this was tuned on a miss
// costs 150–175 ns (BenchmarkMemLatency), so one Lookup at a time cannot
// exceed ~3.3M/s per core whatever it computes. Lookup and LookupBatch
// take no lock (see Concurrency), and TrackBatch and LookupBatch are
// software-pipelined: they prefetch the index line of the segment 2×8
// ahead and the entry of the segment 8 ahead, so ~16 flows' misses overlap
// while the core computes (batch.go): 11–13M lookups and ~8M tracked
// segments per CPU-second on receive batches of 64, against ~7M and ~4.6M
// when lines were touched with loads before a locked pass. BenchmarkLookup and
// BenchmarkTrack report rates per wall-clock second and per CPU-second of
// the benchmark thread.
//
// A caller that must decide per segment what comes before tracking (the
// protection stage: blocklist, SYN meter, cookie ACK) cannot hand over its
// batch; Prepare runs the pipeline's first two stages over the batch and
// TrackPrepared then tracks each segment with its key and hash already
// computed. In the protection stage that halved the time per packet with
// 256K flows (protect's BenchmarkInspectManyFlows: 451 → 204 ns).
//
// # Time
//
// Callers pass now, in whole seconds of any monotonic clock that may wrap
// (comparisons are modulo 2^32), so tests are deterministic and the data
// path reads a coarse clock once per batch instead of calling time.Now per
// packet. Expiry is lazy (an expired flow found by Track is removed first)
// plus Expire, an incremental sweep a housekeeping goroutine calls with a
// budget.
//
// # Concurrency
//
// All methods are safe for concurrent use. The two directions of a
// connection hash to the same key and so to the same shard, whose mutex
// serialises every change to its entries; there is no global lock, and
// statistics live in the shards. Range copies a shard's flows under the
// lock and calls its function unlocked.
//
// Lookup and LookupBatch read without the lock, with sync/atomic loads
// (plain moves on amd64), and validate what they read, seqlock fashion:
// an entry's state, deadline and a sequence number bumped whenever the
// entry is freed share one word, so a hit is trusted when that word reads
// the same before and after the key compare; a miss is trusted when the
// shard's version, odd while remove shifts index slots, did not change
// during the probe. Writers store the fields readers see (index slots,
// keys, that word) atomically. A lookup that fails validation four times
// takes the lock.
package flow
