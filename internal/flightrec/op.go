package flightrec

import (
	"fmt"
	"strconv"
	"sync"
)

// Op is the kind of a recorded event. Values below [OpUser] are defined by
// this package; callers may register their own from OpUser upwards with
// [RegisterOp]. Op-specific detail (violation class, ring slot index, ...)
// goes in [Event.Aux], not in new Ops.
type Op uint8

const (
	// OpInvalid is the zero Op; it marks an unused slot and is never
	// recorded by xskgate.
	OpInvalid Op = iota
	// FillPost: user space posted the frame to the FILL ring.
	FillPost
	// RxRecv: user space consumed the frame from the RX ring.
	RxRecv
	// TxPost: user space posted the frame to the TX ring.
	TxPost
	// CompRecv: user space consumed the frame from the COMPLETION ring.
	CompRecv
	// Drop: user space decided to drop the frame and returned it to its pool.
	Drop
	// Quarantine: the frame was taken out of circulation after a violation.
	Quarantine
	// Violation: an integrity check failed; Aux holds the violation class.
	Violation
	// Kick: a wakeup syscall (sendto for TX, poll/recvfrom for FILL);
	// Addr is unused, Aux may hold the errno.
	Kick
	// Alloc: the frame was taken from the user-space free list.
	Alloc
	// Free: the frame was returned to the user-space free list.
	Free
	// Note: a free-form annotation; Addr and Aux are caller-defined.
	Note

	numBuiltinOps
)

// OpUser is the first Op available to callers through [RegisterOp].
const OpUser Op = 64

var opTable = struct {
	sync.RWMutex
	names [256]string
	aux   [256]func(uint32) string
}{
	names: [256]string{
		OpInvalid:  "Invalid",
		FillPost:   "FillPost",
		RxRecv:     "RxRecv",
		TxPost:     "TxPost",
		CompRecv:   "CompRecv",
		Drop:       "Drop",
		Quarantine: "Quarantine",
		Violation:  "Violation",
		Kick:       "Kick",
		Alloc:      "Alloc",
		Free:       "Free",
		Note:       "Note",
	},
}

// RegisterOp names a caller-defined op. It is meant to be called from init
// functions; it panics if op is below [OpUser], if name is empty, or if op
// already has a different name, because those are programming errors that
// would make dumps ambiguous.
func RegisterOp(op Op, name string) {
	if op < OpUser {
		panic(fmt.Sprintf("flightrec: RegisterOp(%d, %q): ops below %d are reserved", op, name, OpUser))
	}
	if name == "" {
		panic(fmt.Sprintf("flightrec: RegisterOp(%d): empty name", op))
	}
	opTable.Lock()
	defer opTable.Unlock()
	if old := opTable.names[op]; old != "" && old != name {
		panic(fmt.Sprintf("flightrec: RegisterOp(%d, %q): already registered as %q", op, name, old))
	}
	opTable.names[op] = name
}

// SetAuxFormatter installs f to render the Aux field of events with the given
// op in dumps, for example to turn a violation class into its name. A nil f
// restores the default (decimal). Formatters run only when dumping.
func SetAuxFormatter(op Op, f func(aux uint32) string) {
	opTable.Lock()
	opTable.aux[op] = f
	opTable.Unlock()
}

// String returns the registered name of op, or "Op(N)" if it has none.
func (op Op) String() string {
	opTable.RLock()
	name := opTable.names[op]
	opTable.RUnlock()
	if name == "" {
		return "Op(" + strconv.Itoa(int(op)) + ")"
	}
	return name
}

// appendOp appends op's name to b without allocating.
func appendOp(b []byte, op Op) []byte {
	opTable.RLock()
	name := opTable.names[op]
	opTable.RUnlock()
	if name == "" {
		b = append(b, "Op("...)
		b = strconv.AppendUint(b, uint64(op), 10)
		return append(b, ')')
	}
	return append(b, name...)
}

func formatAux(op Op, aux uint32) string {
	opTable.RLock()
	f := opTable.aux[op]
	opTable.RUnlock()
	if f == nil {
		return strconv.FormatUint(uint64(aux), 10)
	}
	return f(aux)
}
