package nodeapi

import (
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/datastore"
)

func TestRecordsFallback(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	const id = "spiffe://example.org/agent/x"
	tests := []struct {
		name  string
		grace time.Duration
		steps func(r *records)
		after time.Duration
		want  bool
	}{
		{name: "never confirmed", grace: time.Minute, steps: func(*records) {}, want: false},
		{name: "confirmed, within grace", grace: time.Minute, steps: func(r *records) { r.confirmed(datastore.Agent{ID: id}) }, after: 59 * time.Second, want: true},
		{name: "confirmed, grace passed", grace: time.Minute, steps: func(r *records) { r.confirmed(datastore.Agent{ID: id}) }, after: 61 * time.Second, want: false},
		{name: "evicted after confirmation", grace: time.Minute, steps: func(r *records) {
			r.confirmed(datastore.Agent{ID: id})
			r.forget(id)
		}, want: false},
		{name: "disabled", grace: -1, steps: func(r *records) { r.confirmed(datastore.Agent{ID: id}) }, want: false},
		{name: "clock went backwards", grace: time.Minute, steps: func(r *records) { r.confirmed(datastore.Agent{ID: id}) }, after: -time.Hour, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = time.Unix(1_700_000_000, 0)
			r := newRecords(tt.grace, clock)
			tt.steps(r)
			now = now.Add(tt.after)
			rec, _, ok := r.fallback(id)
			if ok != tt.want || (ok && rec.ID != id) {
				t.Fatalf("fallback = %v, %v; want %v", rec.ID, ok, tt.want)
			}
		})
	}
}
