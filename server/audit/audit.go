package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Fsync policies.
const (
	// FsyncAlways: Record returns once its line is written and fsynced.
	// Concurrent records share one write and one fsync (group commit).
	FsyncAlways = "always"
	// FsyncInterval (the default): lines are written at once and the file
	// is fsynced every DefaultFsyncInterval while it has unsynced data, and
	// at Close.
	FsyncInterval = "interval"
	// FsyncNever: lines are written at once; the kernel decides when they
	// reach the disk.
	FsyncNever = "never"
)

const (
	// DefaultFsyncInterval is how often FsyncInterval syncs.
	DefaultFsyncInterval = time.Second
	// QueueLen is how many encoded records may wait for the writer.
	QueueLen = 8192
	// BlockTimeout bounds how long Record waits for room in a full queue
	// (a stuck disk) before dropping the record and counting it.
	BlockTimeout = time.Second
	// maxBatchBytes bounds one write.
	maxBatchBytes = 1 << 20
)

// Config configures a Log. At least one of Path and Stdout is required.
type Config struct {
	// Path is the audit file, created with mode 0600 (and its directory
	// with 0700) and always appended to. A symbolic link is refused.
	Path string
	// Stdout also writes every record to standard output.
	Stdout bool
	// Fsync is FsyncAlways, FsyncInterval (empty means this) or FsyncNever.
	Fsync string
	// Clock stamps records; nil means time.Now.
	Clock func() time.Time
	// Log receives write errors; nil discards them.
	Log *slog.Logger

	stdout        io.Writer     // replaces os.Stdout in tests
	fsyncInterval time.Duration // replaces DefaultFsyncInterval in tests
}

// Stats counts records since New.
type Stats struct {
	// Written: records written to every destination.
	Written uint64
	// Failed: records that could not be written to some destination.
	Failed uint64
	// Dropped: records refused because the queue stayed full for
	// BlockTimeout, or because the Log was closed.
	Dropped uint64
}

// Log is an append-only JSON-lines audit log. Its methods are safe for
// concurrent use; a nil *Log records nothing.
type Log struct {
	file     *os.File  // nil without Path
	stdout   io.Writer // nil without Stdout
	fsync    string
	interval time.Duration
	clock    func() time.Time
	log      *slog.Logger

	mu     sync.RWMutex // guards closed and sends on queue
	closed bool
	queue  chan item
	done   chan struct{} // closed when the writer has finished
	err    error         // first error at Close; read after done

	written, failed, dropped, syncs atomic.Uint64
}

type item struct {
	line []byte
	ack  chan struct{} // closed once written (and synced), or nil
}

// New opens the audit log described by cfg and starts its writer.
func New(cfg Config) (*Log, error) {
	switch cfg.Fsync {
	case "":
		cfg.Fsync = FsyncInterval
	case FsyncAlways, FsyncInterval, FsyncNever:
	default:
		return nil, fmt.Errorf("audit: fsync %q: want %q, %q or %q", cfg.Fsync, FsyncAlways, FsyncInterval, FsyncNever)
	}
	if cfg.Path == "" && !cfg.Stdout {
		return nil, errors.New("audit: no destination: set a path, stdout, or both")
	}
	l := &Log{
		fsync:    cfg.Fsync,
		interval: cfg.fsyncInterval,
		clock:    cfg.Clock,
		log:      cfg.Log,
		queue:    make(chan item, QueueLen),
		done:     make(chan struct{}),
	}
	if l.interval <= 0 {
		l.interval = DefaultFsyncInterval
	}
	if l.clock == nil {
		l.clock = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Stdout {
		l.stdout = cfg.stdout
		if l.stdout == nil {
			l.stdout = os.Stdout
		}
	}
	if cfg.Path != "" {
		f, err := openAppend(cfg.Path)
		if err != nil {
			return nil, err
		}
		torn, err := terminateTornTail(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		if torn > 0 {
			l.log.Warn("audit: the previous run's last record was cut short (a crash mid-write, never acknowledged); kept and ended with a newline", "path", cfg.Path, "torn_bytes", torn)
		}
		l.file = f
	}
	go l.run()
	return l, nil
}

// openAppend opens path for appending, refusing symbolic links and files
// that are not regular or are writable by others.
func openAppend(path string) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("audit: %s is a symbolic link; refusing to follow it", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: create directory: %w", err)
	}
	// O_NOFOLLOW closes the race between Lstat and open.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("audit: %s is a symbolic link; refusing to follow it", path)
		}
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: stat: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("audit: %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		f.Close()
		return nil, fmt.Errorf("audit: %s is world-writable (mode %v); fix its mode", path, fi.Mode().Perm())
	}
	return f, nil
}

// terminateTornTail ends the file with a newline when its last line is
// unterminated: a write cut by a crash. The fragment is never a record that
// was acknowledged; it is kept (an audit log is not edited) but ended, so
// the next record starts on a line of its own. It returns the fragment's
// length.
func terminateTornTail(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("audit: stat: %w", err)
	}
	size := fi.Size()
	if size == 0 {
		return 0, nil
	}
	// Read back at most 64 KiB to measure the fragment; a longer one is
	// reported as that long.
	n := min(size, 64<<10)
	tail := make([]byte, n)
	if _, err := f.ReadAt(tail, size-n); err != nil {
		return 0, fmt.Errorf("audit: read the last line: %w", err)
	}
	if tail[n-1] == '\n' {
		return 0, nil
	}
	if _, err := f.Write([]byte{'\n'}); err != nil {
		return 0, fmt.Errorf("audit: end the torn last line: %w", err)
	}
	return n - 1 - int64(bytes.LastIndexByte(tail, '\n')), nil
}

// Record appends one record of the given kind ("attestation", "issuance",
// "admin", ...) with fields. The request ID comes from ctx (see
// WithRequestID); one is generated when ctx has none. Values are encoded as
// described in docs/audit.md. Record never panics; with FsyncAlways it
// returns once the record is on disk (or ctx is done), otherwise at once.
func (l *Log) Record(ctx context.Context, kind string, fields map[string]any) {
	if l == nil {
		return
	}
	line := l.encode(ctx, kind, fields)
	it := item{line: line}
	if l.fsync == FsyncAlways {
		it.ack = make(chan struct{})
	}
	if !l.enqueue(it) {
		return
	}
	if it.ack != nil {
		select {
		case <-it.ack:
		case <-ctx.Done():
		}
	}
}

// enqueue hands it to the writer and reports whether it was accepted.
func (l *Log) enqueue(it item) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		l.log.Error("audit: record after close dropped")
		return false
	}
	select {
	case l.queue <- it:
		return true
	default:
	}
	t := time.NewTimer(BlockTimeout)
	defer t.Stop()
	select {
	case l.queue <- it:
		return true
	case <-t.C:
		l.dropped.Add(1)
		l.log.Error("audit: queue full, record dropped", "waited", BlockTimeout)
		return false
	}
}

// Stats returns the counters; safe to call at any time.
func (l *Log) Stats() Stats {
	if l == nil {
		return Stats{}
	}
	return Stats{Written: l.written.Load(), Failed: l.failed.Load(), Dropped: l.dropped.Load()}
}

// Close writes every record accepted so far, syncs the file (unless the
// policy is FsyncNever) and closes it. Records after Close are dropped.
// Close is idempotent.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.queue)
	}
	l.mu.Unlock()
	<-l.done
	return l.err
}

// run is the writer goroutine: it batches queued lines into one write.
func (l *Log) run() {
	defer close(l.done)
	var tick <-chan time.Time
	if l.file != nil && l.fsync == FsyncInterval {
		t := time.NewTicker(l.interval)
		defer t.Stop()
		tick = t.C
	}
	var (
		buf   = make([]byte, 0, 64<<10)
		acks  []chan struct{}
		dirty bool
	)
	for {
		select {
		case it, ok := <-l.queue:
			if !ok {
				l.finish(dirty)
				return
			}
			buf, acks = append(buf[:0], it.line...), append(acks[:0], it.ack)
			n := 1
			open := true
		drain:
			for len(buf) < maxBatchBytes {
				select {
				case it, ok := <-l.queue:
					if !ok {
						open = false
						break drain
					}
					buf = append(buf, it.line...)
					acks = append(acks, it.ack)
					n++
				default:
					break drain
				}
			}
			l.write(buf, n)
			dirty = l.file != nil
			if l.fsync == FsyncAlways && dirty {
				l.sync()
				dirty = false
			}
			for _, a := range acks {
				if a != nil {
					close(a)
				}
			}
			clear(acks)
			if !open {
				l.finish(dirty)
				return
			}
		case <-tick:
			if dirty {
				l.sync()
				dirty = false
			}
		}
	}
}

// write writes one batch of n records to every destination.
func (l *Log) write(buf []byte, n int) {
	ok := true
	if l.file != nil {
		if _, err := l.file.Write(buf); err != nil {
			ok = false
			l.log.Error("audit: write failed; records lost", "records", n, "error", err)
		}
	}
	if l.stdout != nil {
		if _, err := l.stdout.Write(buf); err != nil {
			ok = false
			l.log.Error("audit: write to stdout failed", "records", n, "error", err)
		}
	}
	if ok {
		l.written.Add(uint64(n))
	} else {
		l.failed.Add(uint64(n))
	}
}

func (l *Log) sync() {
	l.syncs.Add(1)
	if err := l.file.Sync(); err != nil {
		l.log.Error("audit: fsync failed", "error", err)
	}
}

// finish runs once the queue is closed and drained.
func (l *Log) finish(dirty bool) {
	if l.file == nil {
		return
	}
	if dirty && l.fsync != FsyncNever {
		l.syncs.Add(1)
		if err := l.file.Sync(); err != nil {
			l.err = fmt.Errorf("audit: fsync: %w", err)
		}
	}
	if err := l.file.Close(); err != nil && l.err == nil {
		l.err = fmt.Errorf("audit: close: %w", err)
	}
}
