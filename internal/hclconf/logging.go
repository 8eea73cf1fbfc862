package hclconf

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Log levels and formats accepted by the log_level and log_format settings.
var (
	LogLevels  = []string{"debug", "info", "warn", "error"}
	LogFormats = []string{"text", "json"}
)

// ParseLogLevel parses "debug", "info", "warn" or "error", in any case.
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("hclconf: unknown log level %q: use one of %s", s, strings.Join(LogLevels, ", "))
}

// NewLogger returns a logger writing to w at level ("debug", "info",
// "warn", "error") in format ("text" or "json"). Empty level and format
// mean "info" and "text".
func NewLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	log, _, err := newLogger(level, format, w)
	return log, err
}

// newLogger is NewLogger that also returns the logger's level, which may
// be changed while it runs.
func newLogger(level, format string, w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	if level == "" {
		level = "info"
	}
	lvl, err := ParseLogLevel(level)
	if err != nil {
		return nil, nil, err
	}
	lv := new(slog.LevelVar)
	lv.Set(lvl)
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), lv, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), lv, nil
	}
	return nil, nil, fmt.Errorf("hclconf: unknown log format %q: use one of %s", format, strings.Join(LogFormats, ", "))
}

// OpenLogger is NewLogger writing to the file at path, opened for
// appending and created with mode 0600, or to fallback when path is
// empty. The returned Closer closes the file (a no-op for fallback).
func OpenLogger(level, format, path string, fallback io.Writer) (*slog.Logger, io.Closer, error) {
	log, _, c, err := OpenLoggerVar(level, format, path, fallback)
	return log, c, err
}

// OpenLoggerVar is OpenLogger that also returns the logger's level, which
// the caller may change while the logger runs (SPIRE's `logger set`).
func OpenLoggerVar(level, format, path string, fallback io.Writer) (*slog.Logger, *slog.LevelVar, io.Closer, error) {
	var w io.Writer = fallback
	var c io.Closer = nopCloser{}
	if path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("hclconf: open log file: %w", err)
		}
		w, c = f, f
	}
	log, lv, err := newLogger(level, format, w)
	if err != nil {
		c.Close()
		return nil, nil, nil, err
	}
	return log, lv, c, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// CheckLogging validates the log_level and log_format attributes of s
// (raw values level and format), adding problems to diags, and returns
// them lower-cased with defaults ("info", "text") applied.
func (s Section) CheckLogging(level, format string, diags *hcl.Diagnostics) (string, string) {
	lvl, fmtName := "info", "text"
	if s.Set("log_level") {
		if _, err := ParseLogLevel(level); err != nil {
			*diags = append(*diags, s.Errorf("log_level", "Invalid log level",
				"log_level %q is not one of %s.", level, strings.Join(LogLevels, ", ")))
		} else {
			lvl = strings.ToLower(level)
		}
	}
	if s.Set("log_format") {
		switch f := strings.ToLower(format); f {
		case "text", "json":
			fmtName = f
		default:
			*diags = append(*diags, s.Errorf("log_format", "Invalid log format",
				"log_format %q is not one of %s.", format, strings.Join(LogFormats, ", ")))
		}
	}
	return lvl, fmtName
}
