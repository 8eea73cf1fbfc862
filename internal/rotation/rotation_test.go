package rotation_test

import (
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/internal/rotation"
)

func TestSchedule(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(120 * time.Hour)
	tests := []struct {
		name                  string
		published             time.Time
		wantPrepare, wantActv time.Time
	}{
		{name: "published at preparation", published: nb.Add(60 * time.Hour), wantPrepare: nb.Add(60 * time.Hour), wantActv: nb.Add(100 * time.Hour)},
		{name: "published late: at least 1/12 of the life before activation", published: nb.Add(95 * time.Hour),
			wantPrepare: nb.Add(60 * time.Hour), wantActv: nb.Add(105 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, a := rotation.Schedule(nb, na, tt.published)
			if !p.Equal(tt.wantPrepare) || !a.Equal(tt.wantActv) {
				t.Fatalf("Schedule = %s, %s; want %s, %s", p, a, tt.wantPrepare, tt.wantActv)
			}
		})
	}
}

func TestPollInterval(t *testing.T) {
	for life, want := range map[time.Duration]time.Duration{
		time.Second: 100 * time.Millisecond, 50 * time.Second: time.Second, 7 * 24 * time.Hour: 30 * time.Second,
	} {
		if got := rotation.PollInterval(life); got != want {
			t.Errorf("PollInterval(%s) = %s, want %s", life, got, want)
		}
	}
}

func TestLiveRevoked(t *testing.T) {
	now := time.Now()
	got := rotation.LiveRevoked(map[string]time.Time{"gone": now.Add(-time.Second), "live": now.Add(time.Hour)}, now)
	if len(got) != 1 || got["live"].IsZero() {
		t.Fatalf("LiveRevoked = %v, want only the unexpired one", got)
	}
	if rotation.LiveRevoked(map[string]time.Time{"gone": now}, now) != nil {
		t.Fatal("LiveRevoked of only expired entries is not nil")
	}
}
