package protect

import (
	"sync/atomic"

	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/packet"
)

// reason explains a decision. The first values mirror flow.Reason so a
// tracker verdict converts by a cast.
type reason uint8

const (
	rOK                          = reason(flow.ReasonOk)
	rIgnored                     = reason(flow.ReasonIgnored)
	rNotFound                    = reason(flow.ReasonNotFound)
	rUnexpected                  = reason(flow.ReasonUnexpected)
	rOutOfSequence               = reason(flow.ReasonOutOfSequence)
	rAlreadyClosed               = reason(flow.ReasonAlreadyClosed)
	rInvalidFlags                = reason(flow.ReasonInvalidFlags)
	rTableFull                   = reason(flow.ReasonTableFull)
	rWrongDirection              = reason(flow.ReasonWrongDirection)
	rBlocklist            reason = iota // source in the blocklist
	rAllowlist                          // source in the allowlist: no checks
	rNoRule                             // protected prefix, no rule for the destination
	rFragment                           // TCP fragment (no header to track): out of state
	rChallengeNeeded                    // SYN over threshold: challenged or first SYN dropped
	rChallengeRateLimited               // SYN over threshold, challenge budget spent
	rChallengePassed                    // valid cookie ACK, turned into the SYN to the server
	rRetransmitPassed                   // SYN over threshold admitted as a retransmission
	rProxyPending                       // client segment of a proxied flow before the server answered
	rProxyEstablished                   // server SYN-ACK turned into the ACK completing its handshake
	rProxySynResent                     // client segment before the server answered, turned into the SYN again
	numReasons
)

var reasonNames = [numReasons]string{
	"ok", "ignored", "not_found", "unexpected", "out_of_sequence", "already_closed",
	"invalid_flags", "table_full", "wrong_direction",
	"blocklist", "allowlist", "no_rule", "fragment",
	"challenge_needed", "challenge_rate_limited", "challenge_passed", "retransmit_passed",
	"proxy_pending", "proxy_established", "proxy_syn_resent",
}

func (r reason) String() string { return reasonNames[r] }

// protection is the metric label grouping reasons by the protection that
// produced them.
func (r reason) protection() string {
	switch {
	case r >= rNotFound && r <= rWrongDirection && r != rTableFull, r == rFragment:
		return "out_of_state"
	case r >= rChallengeNeeded:
		return "syn"
	}
	return "none"
}

// verdict is what protection would do (verdict) or did (outcome).
type verdict uint8

const (
	vPass verdict = iota
	vDrop
	vChallenge
	numVerdicts
)

var verdictNames = [numVerdicts]string{"pass", "drop", "challenge"}

func (v verdict) String() string { return verdictNames[v] }

// bypass classes: frames this stage does not judge.
const (
	bNonIP = iota
	bNonTCP
	bUnprotected
	bWorkerOutOfRange
	numBypass
)

var bypassNames = [numBypass]string{"non_ip", "non_tcp", "unprotected", "worker_out_of_range"}

// cookie counters.
const (
	cSent = iota
	cValid
	cInvalid
	cRateLimited
	cPassed
	numCookie
)

var cookieNames = [numCookie]string{"sent", "valid", "invalid", "rate_limited", "passed"}

// SYN proxy events beyond the cookies.
const (
	pWindowUpdate        = iota // window update sent to the client in a spare frame
	pWindowUpdateNoFrame        // no spare frame: the client's zero-window probe opens it instead
	pSynResent                  // SYN to the server sent again for a client segment while pending
	pICMPTranslated             // ICMP error quoting a proxied segment: its seq or ack restored
	numProxy
)

var proxyNames = [numProxy]string{"window_update", "window_update_no_frame", "syn_resent", "icmp_translated"}

// counter is written by one worker only, so it increments with a plain
// load and store (no locked instruction on the hot path) while scrapes
// read it atomically from other goroutines.
type counter struct{ v atomic.Uint64 }

func (c *counter) inc()         { c.v.Store(c.v.Load() + 1) }
func (c *counter) load() uint64 { return c.v.Load() }

// counters are one worker's. The arrays are bounded by construction, so
// the label sets are too.
type counters struct {
	decisions [2][numReasons][numVerdicts][numVerdicts]counter // dir, reason, verdict, outcome
	malformed [packet.NumErrors]counter
	bypass    [numBypass]counter
	cookies   [numCookie]counter
	proxy     [numProxy]counter
	retrans   [numRetrans]counter
}
