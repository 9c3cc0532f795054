// Package metrics exports xskgate's data-path counters to Prometheus.
//
// The data path pays nothing for metrics: workers already keep their
// counters in engine.PortStats (atomics written by one worker each) and
// publish engine.Accounting, and the Collector reads both only when
// Prometheus scrapes, building const metrics on the fly. It also reads each
// ring's shared producer and consumer indices (one atomic load each) and
// each socket's XDP_STATISTICS (one getsockopt per socket per scrape).
//
// Labels are bounded so that the series count is fixed by the queue count:
// iface is the side (outer or inner, not the interface name, which
// xskgate_socket_info carries), queue the queue index, worker the worker
// index, and dir, verdict, reason, result, ring, state and counter are
// fixed small sets.
//
// Counters read from several atomics at different instants may be
// momentarily inconsistent with each other (rx packets vs. verdicts), never
// with themselves: each is monotonic. kicks_total{result="ok"} is derived
// (all kicks minus the failed ones) and the Collector keeps it monotonic.
//
// # Lifetime
//
// Ring indices live in memory that closing the sockets unmaps, so a scrape
// must not run while the gate closes. Call Collector.Close before closing
// the gate: it waits for a scrape in progress and makes later scrapes
// report nothing. Other packages add their own collectors to the same
// registry (NewRegistry returns it) and the one endpoint serves them all.
//
// # Concurrency
//
// Collect may be called from several scrapes at once; they are serialised
// by a mutex, which also guards Close. Serve runs one HTTP server until its
// context ends.
package metrics
