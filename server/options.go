package server

import "log/slog"

// Option changes how New builds a server.
type Option func(*options)

type options struct {
	logLevel    *slog.LevelVar
	launchLevel slog.Level
	version     string
}

// WithLogLevel hands New the level of the logger it was given, so that the
// admin API's `logger set|reset` can change it while the server runs.
func WithLogLevel(lv *slog.LevelVar) Option {
	return func(o *options) { o.logLevel, o.launchLevel = lv, lv.Level() }
}

// WithVersion hands New the release the binary was linked with (the
// -ldflags -X value), for hallmark_build_info's version label; without it
// the label is the module version Go recorded.
func WithVersion(v string) Option {
	return func(o *options) { o.version = v }
}
