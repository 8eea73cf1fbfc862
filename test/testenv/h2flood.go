package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

// FloodConn is a hostile Node API client: raw HTTP/2 over TLS without a
// client certificate, as an attacker would speak it. It opens gRPC streams
// without waiting for the server's stream quota, sends nothing unless told
// to, and records how the server ended each stream and the connection.
type FloodConn struct {
	conn *tls.Conn

	wmu    sync.Mutex // guards the fields that follow (the write side)
	bw     *bufio.Writer
	fr     *http2.Framer
	henc   *hpack.Encoder
	hbuf   bytes.Buffer
	nextID uint32

	mu     sync.Mutex // guards the fields that follow
	ended  map[uint32]StreamEnd
	goAway bool
	// Send windows (HTTP/2 flow control): the connection's, each
	// stream's beyond the initial one, and the initial stream window.
	connWindow    int64
	streamWindow  map[uint32]int64
	initialWindow int64
	windowChanged *sync.Cond

	closed chan struct{} // closed when the server's side of the connection ends
}

// StreamEnd is how the server ended one stream: a gRPC status in trailers
// (Code, Msg) or an HTTP/2 reset (Reset != 0).
type StreamEnd struct {
	Code  codes.Code
	Msg   string
	Reset http2.ErrCode
}

// DialFlood connects to addr from the loopback address source (such as
// "127.0.0.7": every 127/8 address is a distinct source to the server) and
// completes the TLS handshake and the HTTP/2 preface.
func DialFlood(ctx context.Context, addr, source string) (*FloodConn, error) {
	d := &net.Dialer{}
	if source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(source)}
	}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // an attacker
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	c := &FloodConn{conn: conn, bw: bufio.NewWriterSize(conn, 64<<10), nextID: 1, ended: map[uint32]StreamEnd{}, closed: make(chan struct{}),
		connWindow: 65535, streamWindow: map[uint32]int64{}, initialWindow: 65535}
	c.windowChanged = sync.NewCond(&c.mu)
	c.fr = http2.NewFramer(c.bw, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.henc = hpack.NewEncoder(&c.hbuf)
	if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.fr.WriteSettings(); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	go c.read()
	return c, nil
}

func (c *FloodConn) read() {
	defer func() {
		close(c.closed)
		c.mu.Lock()
		c.windowChanged.Broadcast()
		c.mu.Unlock()
	}()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
					c.mu.Lock()
					c.initialWindow = int64(v)
					c.windowChanged.Broadcast()
					c.mu.Unlock()
				}
				c.write(func() error { return c.fr.WriteSettingsAck() })
			}
		case *http2.WindowUpdateFrame:
			c.mu.Lock()
			if f.StreamID == 0 {
				c.connWindow += int64(f.Increment)
			} else {
				c.streamWindow[f.StreamID] += int64(f.Increment)
			}
			c.windowChanged.Broadcast()
			c.mu.Unlock()
		case *http2.PingFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WritePing(true, f.Data) })
			}
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				st := StreamEnd{Code: codes.Unknown}
				if v := headerValue(f, "grpc-status"); v != "" {
					n, _ := strconv.Atoi(v)
					st.Code = codes.Code(n)
				}
				st.Msg = headerValue(f, "grpc-message")
				c.end(f.StreamID, st)
			}
		case *http2.RSTStreamFrame:
			c.end(f.StreamID, StreamEnd{Reset: f.ErrCode})
		case *http2.GoAwayFrame:
			c.mu.Lock()
			c.goAway = true
			c.mu.Unlock()
		}
	}
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

func (c *FloodConn) end(id uint32, st StreamEnd) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, done := c.ended[id]; !done {
		c.ended[id] = st
	}
	c.windowChanged.Broadcast()
}

func (c *FloodConn) write(fn func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := fn(); err != nil {
		return err
	}
	return c.bw.Flush()
}

// Open opens n streams of the gRPC method (such as
// "/hallmark.v1.Node/Attest") at once and returns their IDs. Nothing is
// sent on them.
func (c *FloodConn) Open(method string, n int) ([]uint32, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	ids := make([]uint32, 0, n)
	for range n {
		c.hbuf.Reset()
		for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", method},
			{":authority", c.conn.RemoteAddr().String()}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
			if err := c.henc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]}); err != nil {
				return ids, err
			}
		}
		id := c.nextID
		c.nextID += 2
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true}); err != nil {
			return ids, err
		}
		ids = append(ids, id)
	}
	return ids, c.bw.Flush()
}

// SendPrefix sends, on stream id, a gRPC message prefix announcing a
// message of length bytes followed by the first part of its body, and
// nothing more: the server is left waiting for the rest.
func (c *FloodConn) SendPrefix(id uint32, length uint32, part []byte) error {
	if len(part) > 16<<10-5 {
		return errors.New("flood: part exceeds one DATA frame")
	}
	b := make([]byte, 5+len(part))
	binary.BigEndian.PutUint32(b[1:], length)
	copy(b[5:], part)
	c.mu.Lock()
	c.connWindow -= int64(len(b)) // the initial windows always hold one small frame
	c.streamWindow[id] -= int64(len(b))
	c.mu.Unlock()
	return c.write(func() error { return c.fr.WriteData(id, false, b) })
}

// SendBody sends n more bytes of a message body on stream id, as fast as
// the server's flow-control windows allow (as a real client must, or the
// server closes the connection). It returns early if the server ends the
// stream or the connection.
func (c *FloodConn) SendBody(id uint32, n int) error {
	chunk := make([]byte, 16<<10)
	for n > 0 {
		c.mu.Lock()
		var grant int64
		for {
			if _, done := c.ended[id]; done || c.IsClosed() {
				c.mu.Unlock()
				return errors.New("flood: stream or connection ended")
			}
			grant = min(int64(n), int64(len(chunk)), c.connWindow, c.initialWindow+c.streamWindow[id])
			if grant > 0 {
				break
			}
			c.windowChanged.Wait()
		}
		c.connWindow -= grant
		c.streamWindow[id] -= grant
		c.mu.Unlock()
		if err := c.write(func() error { return c.fr.WriteData(id, false, chunk[:grant]) }); err != nil {
			return err
		}
		n -= int(grant)
	}
	return nil
}

// Ended returns how the server has ended streams so far, by stream ID.
func (c *FloodConn) Ended() map[uint32]StreamEnd {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[uint32]StreamEnd, len(c.ended))
	for k, v := range c.ended {
		out[k] = v
	}
	return out
}

// GoneAway reports whether the server sent GOAWAY.
func (c *FloodConn) GoneAway() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goAway
}

// Closed is closed when the server has closed the connection (or it
// failed).
func (c *FloodConn) Closed() <-chan struct{} { return c.closed }

// IsClosed reports whether the connection is closed.
func (c *FloodConn) IsClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// Close closes the connection from the client side.
func (c *FloodConn) Close() error { return c.conn.Close() }

// WaitClosed waits up to d for the server to close the connection.
func (c *FloodConn) WaitClosed(d time.Duration) bool {
	select {
	case <-c.closed:
		return true
	case <-time.After(d):
		return false
	}
}
