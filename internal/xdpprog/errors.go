package xdpprog

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// privHint is the fix for every permission failure. CAP_PERFMON is needed
// because the program subtracts two packet pointers (data_end - data),
// which the verifier only allows to holders of it.
const privHint = "run as root or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN"

// hintError keeps the original error for errors.Is/As but replaces its text
// with a single line that names the fix. cilium/ebpf's own texts can be
// misleading here (an EPERM mentions RLIMIT_MEMLOCK even on memcg kernels).
type hintError struct {
	msg string
	err error
}

func (e *hintError) Error() string { return e.msg }
func (e *hintError) Unwrap() error { return e.err }

func isPerm(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// errENOTSUPP is the kernel-internal ENOTSUPP (524) that leaks out of
// some BPF paths; x/sys/unix does not define it.
const errENOTSUPP = unix.Errno(524)

// errnoName returns "ENOSPC" style names, or "" if err carries no errno.
func errnoName(err error) string {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return ""
	}
	if errno == errENOTSUPP {
		return "ENOTSUPP"
	}
	if n := unix.ErrnoName(errno); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(errno))
}

func loadError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		if isPerm(err) && strings.Contains(ve.Error(), "pointer -= pointer") {
			// Without CAP_PERFMON the verifier refuses data_end - data;
			// keep its one-line summary, it names the instruction.
			return &hintError{msg: fmt.Sprintf("load xdp program: %v: %s", ve, privHint), err: err}
		}
		// The verifier refused the program (EACCES too): a bug here or a
		// kernel that verifies differently, not a missing privilege.
		return fmt.Errorf("load xdp program: the kernel's verifier refused it: %w", err)
	}
	if isPerm(err) {
		return &hintError{
			msg: fmt.Sprintf("load xdp program: permission denied (%s): %s", errnoName(err), privHint),
			err: err,
		}
	}
	// Verifier errors print their last log lines on one line already.
	return fmt.Errorf("load xdp program: %w", err)
}

func registerHint(err error) error {
	switch {
	case isPerm(err):
		return &hintError{msg: fmt.Sprintf("permission denied (%s): %s", errnoName(err), privHint), err: err}
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, errENOTSUPP):
		return &hintError{msg: "not an AF_XDP socket, or not yet bound with an RX ring (EOPNOTSUPP): bind it before registering", err: err}
	case errors.Is(err, unix.EBADF):
		return &hintError{msg: "not an open file descriptor (EBADF)", err: err}
	}
	return err
}
