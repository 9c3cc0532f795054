package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultPath is the control socket's default location.
const DefaultPath = "/run/xskgate/xskgate.sock"

const (
	maxRequest   = 1 << 20
	ioTimeout    = 5 * time.Second
	probeTimeout = time.Second
)

// Request is what a client sends.
type Request struct {
	Cmd  string          `json:"cmd"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response is what the server answers.
type Response struct {
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error string          `json:"error,omitempty"`
}

// Handler serves one command. args is the request's "args" (nil if absent);
// the result is marshalled as the response's "data". An error becomes the
// response's "error": make it one line that says what to do.
type Handler func(ctx context.Context, args json.RawMessage) (any, error)

// Server is a listening control socket.
type Server struct {
	path string
	ln   *net.UnixListener
	log  *slog.Logger
	file os.FileInfo // the socket file as bound, to recognise it in Close

	mu       sync.RWMutex
	handlers map[string]Handler

	// checkPeer decides whether a peer may talk; tests replace it.
	checkPeer func(cred *unix.Ucred) error

	closeOnce sync.Once
	closeErr  error
	conns     sync.WaitGroup
}

// Listen creates the control socket at path and registers the built-in
// "ping" command. It fails if a daemon already answers on path, and
// removes a stale socket file that nobody answers on.
func Listen(path string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket: create directory %s: %w (run as root, or set control.socket)", dir, err)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o022 != 0 {
		log.Warn("control socket directory is writable by others: another user could replace the socket", "dir", dir, "mode", fi.Mode().Perm())
	}
	if err := removeStale(path, log); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("control socket %s appeared while starting: another xskgate is starting; stop it first: %w", path, err)
		}
		return nil, fmt.Errorf("control socket: listen on %s: %w", path, err)
	}
	// Close removes the file itself, and only if it is still ours.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("control socket: chmod %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: stat %s: %w", path, err)
	}
	s := &Server{path: path, ln: ln, log: log, file: fi, handlers: map[string]Handler{}, checkPeer: rootOnly}
	s.Handle("ping", func(context.Context, json.RawMessage) (any, error) {
		return map[string]int{"pid": os.Getpid()}, nil
	})
	return s, nil
}

// removeStale deletes a socket file at path that no daemon answers on.
func removeStale(path string, log *slog.Logger) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("control socket path %s exists and is not a socket: remove it or set control.socket to another path", path)
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("another xskgate is running (control socket %s answers): stop it first", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s exists and cannot be probed: %w (remove it if no xskgate is running)", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control socket: remove stale %s: %w", path, err)
	}
	log.Info("removed stale control socket", "path", path)
	return nil
}

// rootOnly admits uid 0 only.
func rootOnly(cred *unix.Ucred) error {
	if cred.Uid != 0 {
		return fmt.Errorf("permission denied: the xskgate control socket is for root only (you are uid %d): run the command as root", cred.Uid)
	}
	return nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Handle registers h for cmd. It panics on an empty or already registered
// command, which is a programming error.
func (s *Server) Handle(cmd string, h Handler) {
	if cmd == "" || h == nil {
		panic("control: Handle needs a command name and a handler")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.handlers[cmd]; dup {
		panic(fmt.Sprintf("control: command %q registered twice", cmd))
	}
	s.handlers[cmd] = h
}

// Serve accepts connections until ctx ends or Close is called, then waits
// for the connections in progress and returns nil. It closes the listener
// but leaves the socket file to Close.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	defer s.conns.Wait()
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and friends pass; do not spin on them.
			s.log.Warn("control socket accept failed", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			s.serveConn(ctx, conn)
		}()
	}
}

// Close stops accepting and removes the socket file if it is still the one
// Listen bound. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		err := s.ln.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil // Serve closed it when its context ended
		}
		if fi, serr := os.Lstat(s.path); serr == nil && os.SameFile(fi, s.file) {
			if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
		if err != nil {
			s.closeErr = fmt.Errorf("control socket: close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

func (s *Server) serveConn(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ioTimeout))
	resp := s.respond(ctx, conn)
	conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if err := json.NewEncoder(conn).Encode(resp); err != nil {
		s.log.Debug("control response not delivered", "err", err)
	}
}

func (s *Server) respond(ctx context.Context, conn *net.UnixConn) Response {
	// Read the request before judging the peer: answering and closing with
	// the request unread would reset the connection, and the refused client
	// would see "connection reset" instead of the reason.
	var req Request
	dec := json.NewDecoder(io.LimitReader(conn, maxRequest))
	dec.DisallowUnknownFields()
	decErr := dec.Decode(&req)

	cred, err := peerCred(conn)
	if err != nil {
		s.log.Warn("control socket: cannot read peer credentials", "err", err)
		return Response{Error: "internal error: cannot read peer credentials: " + err.Error()}
	}
	if err := s.checkPeer(cred); err != nil {
		s.log.Warn("control socket: connection refused", "uid", cred.Uid, "pid", cred.Pid)
		return Response{Error: err.Error()}
	}
	if decErr != nil {
		return Response{Error: fmt.Sprintf("bad request: %v: send one JSON object {\"cmd\": ..., \"args\": ...}", decErr)}
	}
	// The handler may take its time; only the request had to be quick.
	conn.SetReadDeadline(time.Time{})

	s.mu.RLock()
	h, ok := s.handlers[req.Cmd]
	known := slices.Sorted(maps.Keys(s.handlers))
	s.mu.RUnlock()
	if !ok {
		return Response{Error: fmt.Sprintf("unknown command %q: known commands are %s", req.Cmd, strings.Join(known, ", "))}
	}
	s.log.Debug("control command", "cmd", req.Cmd, "pid", cred.Pid)

	data, err := s.call(ctx, req, h)
	if err != nil {
		return Response{Error: err.Error()}
	}
	raw, err := json.Marshal(data)
	if err != nil {
		s.log.Error("control: response not encodable", "cmd", req.Cmd, "err", err)
		return Response{Error: fmt.Sprintf("internal error: %s: cannot encode the result: %v", req.Cmd, err)}
	}
	return Response{OK: true, Data: raw}
}

// call runs a handler; a panic in one command must not take the data path
// down with the daemon, so it becomes an error (and a stack in the log).
func (s *Server) call(ctx context.Context, req Request, h Handler) (data any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("control handler panicked", "cmd", req.Cmd, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error: %s panicked: %v (see the daemon's log)", req.Cmd, p)
		}
	}()
	return h(ctx, req.Args)
}

func peerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, serr
}
