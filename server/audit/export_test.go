package audit

import (
	"io"
	"time"
)

// WithStdout makes c write to w instead of os.Stdout.
func WithStdout(c Config, w io.Writer) Config { c.Stdout, c.stdout = true, w; return c }

// WithFsyncInterval shortens the interval policy's period.
func WithFsyncInterval(c Config, d time.Duration) Config { c.fsyncInterval = d; return c }

// Syncs returns how many times the file was fsynced.
func (l *Log) Syncs() uint64 { return l.syncs.Load() }
