package telemetry

import (
	"context"
	"testing"

	"google.golang.org/grpc"
)

type nopStream struct{ grpc.ServerStream }

func (nopStream) Context() context.Context { return context.Background() }
func (nopStream) SendMsg(any) error        { return nil }

// BenchmarkHotPathRecording is what metrics add to one Workload API
// FetchX509SVID call: the stream interceptor (time to first response) and
// the open-stream gauge.
func BenchmarkHotPathRecording(b *testing.B) {
	m := New(Config{Daemon: Agent})
	info := &grpc.StreamServerInfo{FullMethod: "/SpiffeWorkloadAPI/FetchX509SVID", IsServerStream: true}
	h := func(_ any, s grpc.ServerStream) error {
		defer m.StreamOpened(StreamWorkloadAPI)()
		return s.SendMsg(nil)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := m.stream(nil, nopStream{}, info, h); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHotPathBaseline is the same call without metrics.
func BenchmarkHotPathBaseline(b *testing.B) {
	h := func(_ any, s grpc.ServerStream) error { return s.SendMsg(nil) }
	b.ReportAllocs()
	for b.Loop() {
		if err := h(nil, nopStream{}); err != nil {
			b.Fatal(err)
		}
	}
}
