package agent

// Option changes how New builds an agent.
type Option func(*options)

type options struct {
	version string
}

// WithVersion hands New the release the binary was linked with (the
// -ldflags -X value), for hallmark_build_info's version label; without it
// the label is the module version Go recorded.
func WithVersion(v string) Option {
	return func(o *options) { o.version = v }
}

func newOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}
