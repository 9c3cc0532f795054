package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

var (
	// ErrNoDaemon is matched (errors.Is) by Call's error when nothing
	// listens on the socket.
	ErrNoDaemon = errors.New("no xskgate daemon")
	// ErrNotRoot is matched by Call's error when the socket refuses the
	// caller for lack of privilege.
	ErrNotRoot = errors.New("not root")
)

// RemoteError is an error the daemon answered with.
type RemoteError struct {
	Cmd string
	Msg string
}

func (e *RemoteError) Error() string { return e.Msg }

// callError carries one clear message and the errors it stands for.
type callError struct {
	msg  string
	errs []error
}

func (e *callError) Error() string   { return e.msg }
func (e *callError) Unwrap() []error { return e.errs }

// Call sends cmd with args (any JSON-encodable value, or nil) to the daemon
// at path and decodes the response's data into out (nil to ignore it). The
// daemon's own errors are *RemoteError. ctx bounds the whole exchange.
func Call(ctx context.Context, path, cmd string, args any, out any) error {
	req := Request{Cmd: cmd}
	if args != nil {
		raw, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("control: encode arguments of %s: %w", cmd, err)
		}
		req.Args = raw
	}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return &callError{fmt.Sprintf("no xskgate daemon at %s: is `xskgate run` running?", path), []error{ErrNoDaemon, err}}
		case errors.Is(err, os.ErrPermission):
			return &callError{fmt.Sprintf("permission denied on control socket %s: only root may control xskgate; run the command as root", path), []error{ErrNotRoot, err}}
		}
		return fmt.Errorf("control: connect to %s: %w", path, err)
	}
	defer conn.Close()
	// Unblock reads and writes when ctx ends; the deadline makes them fail.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	defer stop()

	// A failed write is not the end: the daemon may have answered (a
	// refusal) and closed before reading; its answer says why.
	werr := json.NewEncoder(conn).Encode(req)
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		if werr != nil {
			return exchangeError(ctx, path, cmd, werr)
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("control: the daemon at %s closed the connection without answering %s: see its log: %w", path, cmd, err)
		}
		return exchangeError(ctx, path, cmd, err)
	}
	if !resp.OK {
		if resp.Error == "" {
			resp.Error = fmt.Sprintf("%s failed without a message", cmd)
		}
		return &RemoteError{Cmd: cmd, Msg: resp.Error}
	}
	if out != nil && len(resp.Data) > 0 {
		if err := json.Unmarshal(resp.Data, out); err != nil {
			return fmt.Errorf("control: decode the answer to %s: %w (daemon and CLI versions differ?)", cmd, err)
		}
	}
	return nil
}

var aLongTimeAgo = time.Unix(1, 0)

func exchangeError(ctx context.Context, path, cmd string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("control: %s to %s: %w", cmd, path, cerr)
	}
	return fmt.Errorf("control: %s to %s: %w", cmd, path, err)
}
