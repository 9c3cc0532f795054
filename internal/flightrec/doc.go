// Package flightrec is xskgate's flight recorder: a per-socket ring of the
// last N descriptor events (FILL posts, RX receives, TX posts, completions,
// drops, quarantines, violations, kicks), kept so that when the integrity
// checks catch a UMEM frame in two rings at once we can see how it got there.
//
// # Concept
//
// Each AF_XDP socket (interface, queue) gets one [Recorder]. The worker that
// owns the socket's rings records a fixed-size [Event] per descriptor it moves;
// nothing is formatted on that path. When a violation is detected, or an
// operator asks, [Dump] or [DumpFile] snapshots any number of recorders,
// merges their events by time and formats one line per event, with the
// address split into UMEM chunk base and offset.
//
// Times are CLOCK_MONOTONIC nanoseconds ([Now]) so that the dump lines up with
// an ftrace buffer using trace_clock "mono". [Tracer] owns such a buffer: a
// private tracefs instance that receives the kernel's xdp:* tracepoints plus
// our own markers ([Tracer.Mark]), and that is frozen inside the kernel by a
// trigger on the marker written by [Tracer.Freeze], so the kernel's view of
// the moments before a violation is preserved next to ours.
//
// # Clock
//
// Go's runtime monotonic clock is CLOCK_MONOTONIC read through the vDSO, so
// time.Since(base) for a package-level base costs one vDSO call and no
// syscall (about 35 ns on a KVM guest with kvm-clock/tsc; a raw
// clock_gettime syscall costs more than ten times that). At init the package
// measures the constant offset between that clock and CLOCK_MONOTONIC proper
// with a few bracketed clock_gettime syscalls; both read the same kernel
// clock, so the offset does not drift and [CalibrationError] bounds its error
// (typically well under a microsecond, below ftrace's printed resolution).
// Callers that stamp a whole batch with one clock read use [Now] and
// [Recorder.RecordAt].
//
// # Invariants
//
//   - A Recorder's ring holds exactly the last Size() events, oldest first;
//     older events are overwritten, never blocked on. Recorded() counts all
//     events ever recorded, so the number lost to wrap-around is known.
//   - Recording never allocates and never blocks.
//   - Event times from one Recorder are non-decreasing when they come from
//     [Recorder.Record]; callers of [Recorder.RecordAt] must keep that true.
//   - Snapshot returns only events that were completely written: an event
//     that the writer may have been overwriting while it was copied is
//     dropped, never returned torn.
//
// # Concurrency
//
// A Recorder has exactly one writer: the goroutine (locked to its OS thread)
// that owns the socket's rings. Record, RecordAt and SetThread must only be
// called from it. Snapshot, Dump and the accessors may be called from any
// goroutine, concurrently with the writer and with each other.
//
// The ring is a single-writer seqlock keyed on a published head index: the
// writer fills a slot and then publishes head = n+1. A reader loads head,
// copies the slots, loads head again and keeps only the indices the writer
// cannot have started to overwrite by then. The ring has one spare slot
// beyond Size(), the one the writer may be filling, so a snapshot of an idle
// or slow writer returns all Size() events. The head is atomic everywhere.
// The slot words are plain MOVs on amd64, in assembly (slot_amd64.go says
// why x86-TSO makes that sound, and why assembly: the race detector does not
// instrument it, so -race builds run the shipped code), and sync/atomic on
// every other architecture (slot_other.go), where the scheme needs it. On
// amd64 atomic slot stores (XCHG) cost about four times as much per event as
// the plain ones: 16 against 6 ns when this machine was quiet.
//
// A Tracer is safe for concurrent use: a mutex guards its format buffer and
// the marker file, which is cheap next to the write(2) each Mark performs.
// Mirroring every descriptor event into ftrace is therefore far too slow for
// the hot path; mark rare events (violations, quarantines, kicks) only.
package flightrec
