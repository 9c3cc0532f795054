// Package control is the Unix socket through which the xskgate CLI talks to
// a running daemon.
//
// # Protocol
//
// One request per connection, one response, then the server closes:
//
//	→ {"cmd": "stats", "args": {...}}
//	← {"ok": true, "data": ...}  or  {"ok": false, "error": "one line"}
//
// Both are single JSON values; the request is limited to 1 MiB and must
// arrive within 5 seconds. One connection per request keeps the server
// stateless and lets a client be a shell one-liner (socat).
//
// # Access
//
// Only root may use the socket. Three layers enforce it: the directory is
// created 0700, the socket is chmod 0600 right after bind, and every
// connection's peer credentials (SO_PEERCRED, taken by the kernel at
// connect) must carry uid 0. The last layer is the one that matters: it
// closes the window between bind and chmod and does not depend on the
// directory's permissions, which the operator may have changed.
//
// # One daemon per socket
//
// Listen refuses a path on which a daemon answers, and removes a socket
// file nobody answers on (a daemon that was killed leaves one behind).
// Two daemons starting at the same instant can both see the stale file;
// the one that binds second fails with EADDRINUSE, so at most one serves.
// Close removes the socket file only if it is still the one this Server
// bound, so a stopping daemon never deletes a successor's socket.
//
// # Concurrency
//
// Handlers run concurrently, one goroutine per connection, with the
// context given to Serve; Handle may be called at any time. Serve returns
// after its context ends or Close is called and every connection is done.
package control
