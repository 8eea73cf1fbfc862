package server

import "log/slog"

// Option changes how New builds a server.
type Option func(*options)

type options struct {
	logLevel    *slog.LevelVar
	launchLevel slog.Level
}

// WithLogLevel hands New the level of the logger it was given, so that the
// admin API's `logger set|reset` can change it while the server runs.
func WithLogLevel(lv *slog.LevelVar) Option {
	return func(o *options) { o.logLevel, o.launchLevel = lv, lv.Level() }
}
