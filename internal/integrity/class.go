package integrity

import (
	"fmt"
	"strings"
)

// Class is a kind of integrity violation. Each belongs to one Check, which
// switches it on and off.
type Class uint8

const (
	// Poison.
	UnwrittenSlot     Class = iota // RX/COMP slot still holds xsk.Poison: published, never written
	UninitializedDesc              // all-zero RX descriptor: a slot of the first lap never written

	// Bounds.
	BadAddr    // address outside the UMEM, or RX offset in chunk != RxOffset
	BadLen     // len 0, or the bytes do not fit the chunk
	BadOptions // options other than 0

	// Ownership.
	ForeignFrame      // chunk of another worker's share
	RxNotInFill       // RX names a chunk that is not waiting in this socket's FILL
	Duplicate         // RX repeats the previous descriptor, or a chunk already received
	StaleDesc         // RX names a chunk still queued in FILL: a previous lap's descriptor
	FillWhileTx       // FILL post of a chunk that is on a TX ring
	DoubleFill        // FILL post of a chunk already in a FILL ring (or lost in one)
	TxNotOwned        // TX post of a chunk the worker does not hold
	CompletionNotSent // COMPLETION of a chunk that is not on this socket's TX
	TxFree            // TX post of a free or completed chunk: neither received nor taken for an Extra frame
	TxOverdue         // a TX entry not completed within Config.TxAgeLimit while its kernel completed others

	// Order.
	OutOfOrder // RX chunk is not the next FILL entry: the kernel skipped entries

	// Metadata.
	BadMeta         // no metadata magic, or the wrong queue in it
	MetaLenMismatch // descriptor len differs from what the XDP program saw
	SeqRegression   // metadata sequence did not increase: two polls interleaved

	// IPLength (counted, never a descriptor fault).
	IPLength // IPv4 total length / IPv6 payload length disagrees with the frame

	NumClasses
)

// noClass is the internal "no violation".
const noClass Class = 0xff

var classNames = [NumClasses]string{
	UnwrittenSlot:     "unwritten_slot",
	UninitializedDesc: "uninitialized_desc",
	BadAddr:           "bad_addr",
	BadLen:            "bad_len",
	BadOptions:        "bad_options",
	ForeignFrame:      "foreign_frame",
	RxNotInFill:       "rx_not_in_fill",
	Duplicate:         "duplicate",
	StaleDesc:         "stale_desc",
	FillWhileTx:       "fill_while_tx",
	DoubleFill:        "double_fill",
	TxNotOwned:        "tx_not_owned",
	CompletionNotSent: "completion_not_sent",
	TxFree:            "tx_free",
	TxOverdue:         "tx_overdue",
	OutOfOrder:        "out_of_order",
	BadMeta:           "bad_meta",
	MetaLenMismatch:   "meta_len_mismatch",
	SeqRegression:     "seq_regression",
	IPLength:          "ip_length",
}

var classCheck = [NumClasses]Check{
	UnwrittenSlot:     CheckPoison,
	UninitializedDesc: CheckPoison,
	BadAddr:           CheckBounds,
	BadLen:            CheckBounds,
	BadOptions:        CheckBounds,
	ForeignFrame:      CheckOwnership,
	RxNotInFill:       CheckOwnership,
	Duplicate:         CheckOwnership,
	StaleDesc:         CheckOwnership,
	FillWhileTx:       CheckOwnership,
	DoubleFill:        CheckOwnership,
	TxNotOwned:        CheckOwnership,
	CompletionNotSent: CheckOwnership,
	TxFree:            CheckOwnership,
	TxOverdue:         CheckOwnership,
	OutOfOrder:        CheckOrder,
	BadMeta:           CheckMetadata,
	MetaLenMismatch:   CheckMetadata,
	SeqRegression:     CheckMetadata,
	IPLength:          CheckIPLength,
}

// String is the class's metric label, e.g. "rx_not_in_fill".
func (c Class) String() string {
	if c < NumClasses {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Check is the switch that enables the class.
func (c Class) Check() Check {
	if c < NumClasses {
		return classCheck[c]
	}
	return NumChecks
}

// Check names one group of checks, switchable at run time (SetEnabled).
type Check uint8

const (
	CheckOwnership Check = iota // per-chunk state machine (free, FILL, RX, TX, completed, spare, lost)
	CheckOrder                  // RX follows FILL order
	CheckPoison                 // poisoned and all-zero slots
	CheckBounds                 // addresses, lengths and options
	CheckMetadata               // XDP metadata: magic, length, sequence
	CheckIPLength               // IP header length vs frame length
	NumChecks
)

var checkNames = [NumChecks]string{"ownership", "order", "poison", "bounds", "metadata", "ip_length"}

func (c Check) String() string {
	if c < NumChecks {
		return checkNames[c]
	}
	return fmt.Sprintf("check(%d)", uint8(c))
}

// ParseCheck parses a check name as String prints it.
func ParseCheck(s string) (Check, error) {
	for i, n := range checkNames {
		if strings.EqualFold(s, n) {
			return Check(i), nil
		}
	}
	return 0, fmt.Errorf("unknown integrity check %q: use one of %s", s, strings.Join(checkNames[:], ", "))
}

// Policy is what a worker does after a violation, beyond dropping the
// packet.
type Policy uint8

const (
	// Drop the affected packet (Free or Quarantine its frame) and go on.
	Drop Policy = iota
	// Freeze blocks the worker inside the checker after the evidence is
	// written, until Unfreeze or Close: its rings stay exactly as they were
	// for inspection, while the kernel drops that queue's traffic
	// (rx_ring_full, FILL empty). The other workers go on.
	Freeze
	// Panic panics in the worker (the engine turns that into a worker
	// error). For tests.
	Panic
)

func (p Policy) String() string {
	switch p {
	case Drop:
		return "drop"
	case Freeze:
		return "freeze"
	case Panic:
		return "panic"
	}
	return fmt.Sprintf("policy(%d)", uint8(p))
}

// ParsePolicy parses "drop", "freeze" or "panic".
func ParsePolicy(s string) (Policy, error) {
	switch strings.ToLower(s) {
	case "drop", "":
		return Drop, nil
	case "freeze":
		return Freeze, nil
	case "panic":
		return Panic, nil
	}
	return 0, fmt.Errorf("unknown integrity policy %q: use drop, freeze or panic", s)
}
