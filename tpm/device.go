package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// DefaultDevice is the kernel's resource-managed TPM device.
const DefaultDevice = "/dev/tpmrm0"

// DefaultEventLogPath is where Linux exposes the firmware event log.
const DefaultEventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"

// maxResponse bounds a TPM response read from a socket.
const maxResponse = 64 << 10

// commandTimeout bounds one command on a socket device.
const commandTimeout = 30 * time.Second

// KeyAlg selects an asymmetric key algorithm for the EK or the AK.
type KeyAlg string

// Key algorithms.
const (
	RSA KeyAlg = "rsa"
	ECC KeyAlg = "ecc"
)

// Option configures Open.
type Option interface{ apply(*Device) }

type optionFunc func(*Device)

func (f optionFunc) apply(d *Device) { f(d) }

// WithEK selects the endorsement key algorithm (RSA by default). The agent
// ID is derived from the EK, so changing it changes the agent's identity.
func WithEK(alg KeyAlg) Option { return optionFunc(func(d *Device) { d.ekAlg = alg }) }

// Device is an open TPM. It is safe for concurrent use: every operation
// holds mu for its whole duration.
type Device struct {
	spec  string
	ekAlg KeyAlg
	dial  func() (transport.TPMCloser, error)

	// mu guards the fields that follow and serialises all TPM commands.
	mu     sync.Mutex
	kept   transport.TPMCloser // open character device, nil for sockets
	closed bool
}

// Open opens a TPM. device is a character device path (default
// /dev/tpmrm0 when empty), "unix:/path/to/sock" or "tcp:host:port" for a
// swtpm data socket speaking the raw TPM command protocol.
func Open(device string, opts ...Option) (*Device, error) {
	if device == "" {
		device = DefaultDevice
	}
	d := &Device{spec: device, ekAlg: RSA}
	for _, o := range opts {
		o.apply(d)
	}
	if d.ekAlg != RSA && d.ekAlg != ECC {
		return nil, fmt.Errorf("tpm: unknown EK algorithm %q (want rsa or ecc)", d.ekAlg)
	}
	switch {
	case strings.HasPrefix(device, "unix:"):
		path := strings.TrimPrefix(device, "unix:")
		if path == "" {
			return nil, errors.New("tpm: empty unix socket path")
		}
		d.dial = func() (transport.TPMCloser, error) { return dialStream("unix", path) }
	case strings.HasPrefix(device, "tcp:"):
		addr := strings.TrimPrefix(device, "tcp:")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("tpm: bad tcp address %q: %w", addr, err)
		}
		d.dial = func() (transport.TPMCloser, error) { return dialStream("tcp", addr) }
	default:
		t, err := linuxtpm.Open(device)
		if err != nil {
			return nil, fmt.Errorf("tpm: open %s: %w", device, err)
		}
		d.kept = t
	}
	// Check that something answers.
	if err := d.do(func(t transport.TPM) error {
		_, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTManufacturer), PropertyCount: 1}.Execute(t)
		return err
	}); err != nil {
		d.Close()
		return nil, fmt.Errorf("tpm: open %s: %w", device, err)
	}
	return d, nil
}

// String returns the device specification it was opened with.
func (d *Device) String() string { return d.spec }

// Close releases the device.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.kept != nil {
		err := d.kept.Close()
		d.kept = nil
		return err
	}
	return nil
}

// do runs fn with exclusive use of a connection to the TPM.
func (d *Device) do(fn func(t transport.TPM) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("tpm: device is closed")
	}
	if d.kept != nil {
		return fn(d.kept)
	}
	t, err := d.dial()
	if err != nil {
		return fmt.Errorf("tpm: connect %s: %w", d.spec, err)
	}
	defer t.Close()
	return fn(t)
}

// streamTPM frames TPM commands over a stream socket: it reads the
// response header to learn the response size, so partial reads are fine.
type streamTPM struct{ c net.Conn }

func dialStream(network, addr string) (transport.TPMCloser, error) {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &streamTPM{c: c}, nil
}

// Send sends a command, resending it (with backoff) while the TPM answers
// TPM_RC_RETRY, TPM_RC_YIELDED or TPM_RC_TESTING.
func (s *streamTPM) Send(cmd []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		rsp, err := s.send(cmd)
		if err != nil {
			return nil, err
		}
		switch binary.BigEndian.Uint32(rsp[6:10]) {
		case 0x922, 0x908, 0x90a: // RETRY, YIELDED, TESTING
			if attempt < 10 {
				time.Sleep(time.Duration(1<<attempt) * time.Millisecond)
				continue
			}
		}
		return rsp, nil
	}
}

func (s *streamTPM) send(cmd []byte) ([]byte, error) {
	if err := s.c.SetDeadline(time.Now().Add(commandTimeout)); err != nil {
		return nil, err
	}
	if _, err := s.c.Write(cmd); err != nil {
		return nil, err
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(s.c, hdr); err != nil {
		return nil, fmt.Errorf("read response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("response size %d out of range", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.c, rsp[10:]); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return rsp, nil
}

func (s *streamTPM) Close() error { return s.c.Close() }

// ReadEventLog reads a binary measured-boot event log from path
// (DefaultEventLogPath when empty). A missing file yields nil and no error:
// not every machine (and no swtpm) has one.
func ReadEventLog(path string) ([]byte, error) {
	if path == "" {
		path = DefaultEventLogPath
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: event log: %w", err)
	}
	defer f.Close()
	const maxLog = 16 << 20
	b, err := io.ReadAll(io.LimitReader(f, maxLog+1))
	if err != nil {
		return nil, fmt.Errorf("tpm: event log: %w", err)
	}
	if len(b) > maxLog {
		return nil, fmt.Errorf("tpm: event log %s larger than %d bytes", path, maxLog)
	}
	return b, nil
}
