package audit_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/audit"
)

func issuanceFields() map[string]any {
	return map[string]any{
		"spiffe_id":  "spiffe://example.org/ns/default/sa/frontend",
		"entry_id":   "5f0c1e7a-2b9d-4c1e-9a57-6c1f2b3d4e5f",
		"caller":     "spiffe://example.org/agent/k8s_psat/prod/9e6f4a2c",
		"serial":     "301291372939188245329284091923847561234",
		"expires_at": "2026-03-01T13:30:45Z",
	}
}

// BenchmarkRecord measures Record with the writer goroutine, from
// GOMAXPROCS goroutines at once (-cpu to vary), per fsync policy.
func BenchmarkRecord(b *testing.B) {
	for _, fsync := range []string{audit.FsyncNever, audit.FsyncInterval, audit.FsyncAlways} {
		b.Run(fsync, func(b *testing.B) {
			l, err := audit.New(audit.Config{Path: filepath.Join(b.TempDir(), "a.jsonl"), Fsync: fsync})
			if err != nil {
				b.Fatal(err)
			}
			ctx := audit.WithRequestID(context.Background(), "")
			fields := issuanceFields()
			b.ReportAllocs()
			b.SetParallelism(8) // concurrent requests, as on a busy server
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l.Record(ctx, "issuance", fields)
				}
			})
			if err := l.Close(); err != nil { // the drain is part of the cost
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkMutexBaseline is the design not taken: encode with
// encoding/json and write each line under a mutex, one write(2) per
// record, no fsync.
func BenchmarkMutexBaseline(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "a.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var mu sync.Mutex
	fields := issuanceFields()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := map[string]any{"time": time.Now().UTC().Format(time.RFC3339Nano), "request_id": "x", "kind": "issuance"}
			for k, v := range fields {
				rec[k] = v
			}
			line, _ := json.Marshal(rec)
			line = append(line, '\n')
			mu.Lock()
			f.Write(line)
			mu.Unlock()
		}
	})
}
