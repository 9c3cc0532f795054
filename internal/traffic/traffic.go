// Package traffic generates verifiable TCP traffic for the lab: a client
// streams pseudo-random bytes up while the server streams other
// pseudo-random bytes down, and each side checks a SHA-256 of what it
// received against what the other side sent. A byte reordered, dropped,
// duplicated or corrupted anywhere on the path fails the check.
//
// Wire format, per connection: the client sends a 24-byte header (seed, up,
// down as big-endian uint64), then up bytes of stream(seed); the server
// sends down bytes of stream(seed+1), then the 32-byte SHA-256 of the up
// bytes it received.
package traffic

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// stream is a deterministic byte source.
type stream struct{ r *rand.ChaCha8 }

func newStream(seed uint64) *stream {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	return &stream{rand.NewChaCha8(s)}
}

func (s *stream) Read(p []byte) (int, error) { return s.r.Read(p) }

// Server accepts connections until its listener closes.
type Server struct {
	ln            net.Listener
	wg            sync.WaitGroup
	mu            sync.Mutex
	conns         map[net.Conn]struct{}
	Conns, Failed atomic.Uint64
	errMu         sync.Mutex
	errs          []error
}

// Serve starts serving on ln (already listening, possibly in another
// network namespace).
func Serve(ln net.Listener) *Server {
	s := &Server{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				if err := s.handle(c); err != nil {
					s.Failed.Add(1)
					s.errMu.Lock()
					s.errs = append(s.errs, err)
					s.errMu.Unlock()
				} else {
					s.Conns.Add(1)
				}
			}()
		}
	}()
	return s
}

func (s *Server) handle(c net.Conn) error {
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	br := bufio.NewReaderSize(c, 64<<10)
	var hdr [24]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	seed, up, down := binary.BigEndian.Uint64(hdr[0:]), binary.BigEndian.Uint64(hdr[8:]), binary.BigEndian.Uint64(hdr[16:])
	errc := make(chan error, 1)
	go func() {
		_, err := io.CopyN(c, newStream(seed+1), int64(down))
		errc <- err
	}()
	h := sha256.New()
	if _, err := io.CopyN(h, br, int64(up)); err != nil {
		return fmt.Errorf("read %d bytes up: %w", up, err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("write %d bytes down: %w", down, err)
	}
	_, err := c.Write(h.Sum(nil))
	return err
}

// Close stops accepting, closes open connections and waits for their
// handlers.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// Errors returns what failed on the server side.
func (s *Server) Errors() []error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return append([]error(nil), s.errs...)
}

// Result is one connection's outcome.
type Result struct {
	Up, Down int64
	Elapsed  time.Duration
	Err      error
}

// ErrMismatch means bytes arrived but not the bytes that were sent.
var ErrMismatch = errors.New("data mismatch")

// Exchange runs one connection over c: up bytes to the server, down bytes
// back, both verified.
func Exchange(ctx context.Context, c net.Conn, seed uint64, up, down int64) Result {
	start := time.Now()
	res := Result{}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl.Add(30 * time.Second))
	} else {
		c.SetDeadline(time.Now().Add(2 * time.Minute))
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	var hdr [24]byte
	binary.BigEndian.PutUint64(hdr[0:], seed)
	binary.BigEndian.PutUint64(hdr[8:], uint64(up))
	binary.BigEndian.PutUint64(hdr[16:], uint64(down))
	type wres struct {
		n   int64
		err error
	}
	errc := make(chan wres, 1)
	sent := sha256.New()
	go func() {
		if _, err := c.Write(hdr[:]); err != nil {
			errc <- wres{0, err}
			return
		}
		n, err := io.CopyN(io.MultiWriter(c, sent), newStream(seed), up)
		errc <- wres{n, err}
	}()
	want := sha256.New()
	if _, err := io.CopyN(want, newStream(seed+1), down); err != nil {
		res.Err = err
		return res
	}
	got := sha256.New()
	br := bufio.NewReaderSize(c, 64<<10)
	n, err := io.CopyN(got, br, down)
	res.Down = n
	if err != nil {
		res.Err = fmt.Errorf("read %d of %d bytes down: %w", n, down, err)
		return res
	}
	w := <-errc
	res.Up = w.n
	if w.err != nil {
		res.Err = fmt.Errorf("write up: %w", w.err)
		return res
	}
	var srvSum [32]byte
	if _, err := io.ReadFull(br, srvSum[:]); err != nil {
		res.Err = fmt.Errorf("read server's checksum: %w", err)
		return res
	}
	switch {
	case string(got.Sum(nil)) != string(want.Sum(nil)):
		res.Err = fmt.Errorf("%w: bytes received from the server differ from those it sent", ErrMismatch)
	case string(srvSum[:]) != string(sent.Sum(nil)):
		res.Err = fmt.Errorf("%w: server received different bytes from those sent", ErrMismatch)
	}
	res.Elapsed = time.Since(start)
	return res
}
