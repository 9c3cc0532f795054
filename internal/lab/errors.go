package lab

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Error kinds, for errors.Is.
var (
	// ErrNeedRoot: the caller lacks CAP_SYS_ADMIN/CAP_NET_ADMIN.
	ErrNeedRoot = errors.New("lab: needs root")
	// ErrUnsupported: the kernel lacks network namespaces or veth.
	ErrUnsupported = errors.New("lab: unsupported by this kernel")
	// ErrExists: a lab (or one of its namespaces) with that prefix exists.
	ErrExists = errors.New("lab: already exists")
	// ErrNotFound: no lab (or namespace) with that prefix/name exists.
	ErrNotFound = errors.New("lab: not found")
	// ErrInvalid: a bad Config value or argument.
	ErrInvalid = errors.New("lab: invalid argument")
)

// Error is a one-line, actionable error. errors.Is matches Kind and the
// underlying cause Err.
type Error struct {
	Kind error  // one of the Err* kinds above
	Msg  string // full one-line message, names the problem and the fix
	Err  error  // underlying cause, may be nil
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + " (" + e.Err.Error() + ")"
	}
	return e.Msg
}

// Is matches the error kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func invalidf(format string, args ...any) error {
	return &Error{Kind: ErrInvalid, Msg: fmt.Sprintf(format, args...)}
}

// mapPerm turns permission and "not supported" errno values into
// actionable errors; other errors are wrapped with what was being done.
func mapPerm(what string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return &Error{Kind: ErrNeedRoot, Msg: fmt.Sprintf("lab: %s needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run as root", what), Err: err}
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EAFNOSUPPORT), errors.Is(err, unix.EPROTONOSUPPORT):
		return &Error{Kind: ErrUnsupported, Msg: fmt.Sprintf("lab: %s is not supported by this kernel: enable CONFIG_NET_NS and CONFIG_VETH (modprobe veth)", what), Err: err}
	}
	return fmt.Errorf("lab: %s: %w", what, err)
}
