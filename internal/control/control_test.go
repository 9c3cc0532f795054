package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// serve starts a server on a fresh socket and stops it when the test ends.
func serve(t *testing.T, setup func(*Server)) *Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "xskgate.sock")
	s, err := Listen(path, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

type statsArgs struct {
	Queue int `json:"queue"`
}

type statsReply struct {
	Queue   int    `json:"queue"`
	Packets uint64 `json:"packets"`
}

func TestRoundTrip(t *testing.T) {
	s := serve(t, func(s *Server) {
		s.Handle("stats", func(_ context.Context, args json.RawMessage) (any, error) {
			var a statsArgs
			if err := json.Unmarshal(args, &a); err != nil {
				return nil, fmt.Errorf("stats: bad arguments: %w", err)
			}
			return statsReply{Queue: a.Queue, Packets: 42}, nil
		})
		s.Handle("fail", func(context.Context, json.RawMessage) (any, error) {
			return nil, errors.New("queue 9 does not exist: the gate serves queues 0 to 1")
		})
		s.Handle("panic", func(context.Context, json.RawMessage) (any, error) { panic("boom") })
	})
	ctx := context.Background()

	var r statsReply
	if err := Call(ctx, s.Path(), "stats", statsArgs{Queue: 3}, &r); err != nil {
		t.Fatal(err)
	}
	if r != (statsReply{Queue: 3, Packets: 42}) {
		t.Fatalf("got %+v", r)
	}
	var ping struct{ PID int }
	if err := Call(ctx, s.Path(), "ping", nil, &ping); err != nil || ping.PID != os.Getpid() {
		t.Fatalf("ping: %+v, %v", ping, err)
	}

	for _, tc := range []struct{ cmd, want string }{
		{"nope", `unknown command "nope": known commands are fail, panic, ping, stats`},
		{"fail", "queue 9 does not exist: the gate serves queues 0 to 1"},
		{"panic", "internal error: panic panicked: boom (see the daemon's log)"},
	} {
		err := Call(ctx, s.Path(), tc.cmd, nil, nil)
		var re *RemoteError
		if !errors.As(err, &re) || err.Error() != tc.want || re.Cmd != tc.cmd {
			t.Errorf("%s: got %v, want remote error %q", tc.cmd, err, tc.want)
		}
	}
	// The server survived the panic.
	if err := Call(ctx, s.Path(), "ping", nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestBadRequest(t *testing.T) {
	s := serve(t, nil)
	for _, in := range []string{"not json\n", `{"cmd": "ping", "extra": 1}` + "\n"} {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
		var resp Response
		if err := json.NewDecoder(c).Decode(&resp); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if resp.OK || !strings.HasPrefix(resp.Error, "bad request: ") {
			t.Errorf("%q: got %+v", in, resp)
		}
	}
}

func TestModes(t *testing.T) {
	s := serve(t, nil)
	fi, err := os.Lstat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(s.Path()))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", di.Mode().Perm())
	}
}

func TestSecondListenFails(t *testing.T) {
	s := serve(t, nil)
	_, err := Listen(s.Path(), quiet())
	want := fmt.Sprintf("another xskgate is running (control socket %s answers): stop it first", s.Path())
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	// The refused Listen must not have touched the live socket.
	if err := Call(context.Background(), s.Path(), "ping", nil, nil); err != nil {
		t.Fatal(err)
	}
}

// staleSocket leaves a socket file that nobody listens on, as a killed
// daemon does.
func staleSocket(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "xskgate.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStaleSocketRemoved(t *testing.T) {
	path := staleSocket(t)

	err := Call(context.Background(), path, "ping", nil, nil)
	if !errors.Is(err, ErrNoDaemon) || err.Error() != fmt.Sprintf("no xskgate daemon at %s: is `xskgate run` running?", path) {
		t.Fatalf("Call on a stale socket: %v", err)
	}

	s, err := Listen(path, quiet())
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	if err := Call(ctx, path, "ping", nil, nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file left after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNoDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.sock")
	err := Call(context.Background(), path, "stats", nil, nil)
	want := fmt.Sprintf("no xskgate daemon at %s: is `xskgate run` running?", path)
	if !errors.Is(err, ErrNoDaemon) || !errors.Is(err, os.ErrNotExist) || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestNotASocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(path, quiet())
	want := fmt.Sprintf("control socket path %s exists and is not a socket: remove it or set control.socket to another path", path)
	if err == nil || err.Error() != want {
		t.Fatalf("got %v", err)
	}
}

func TestPeerRefused(t *testing.T) {
	seenc := make(chan *unix.Ucred, 1)
	s := serve(t, func(s *Server) {
		// Pretend root is not root: the test runs as root, and the
		// rejection path is what matters.
		s.checkPeer = func(c *unix.Ucred) error {
			seenc <- c
			return rootOnly(&unix.Ucred{Uid: 1000, Pid: c.Pid})
		}
	})
	err := Call(context.Background(), s.Path(), "ping", nil, nil)
	want := "permission denied: the xskgate control socket is for root only (you are uid 1000): run the command as root"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	seen := <-seenc
	if int(seen.Pid) != os.Getpid() || int(seen.Uid) != os.Getuid() {
		t.Fatalf("peer credentials %+v, want this process", seen)
	}
	if rootOnly(&unix.Ucred{Uid: 0}) != nil {
		t.Fatal("root refused")
	}
}

func TestCloseKeepsSuccessorSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.sock")
	s, err := Listen(path, quiet())
	if err != nil {
		t.Fatal(err)
	}
	// Someone removed our file and a new daemon bound the path.
	os.Remove(path)
	s2, err := Listen(path, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("Close removed the successor's socket: %v", err)
	}
}

func TestCallContext(t *testing.T) {
	block := make(chan struct{})
	s := serve(t, func(s *Server) {
		s.Handle("slow", func(ctx context.Context, _ json.RawMessage) (any, error) {
			select {
			case <-block:
			case <-ctx.Done():
			}
			return nil, nil
		})
	})
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := Call(ctx, s.Path(), "slow", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
}

func TestHandlePanics(t *testing.T) {
	s := serve(t, nil)
	defer func() {
		if recover() == nil {
			t.Fatal("registering ping twice did not panic")
		}
	}()
	s.Handle("ping", func(context.Context, json.RawMessage) (any, error) { return nil, nil })
}
