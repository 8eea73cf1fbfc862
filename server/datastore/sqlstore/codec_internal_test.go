package sqlstore

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestLoadMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name    string
		fs      fstest.MapFS
		want    int
		wantErr string
	}{
		{"in order", fstest.MapFS{"migrations/0002_b.sql": file("B"), "migrations/0001_a.sql": file("A")}, 2, ""},
		{"gap", fstest.MapFS{"migrations/0001_a.sql": file("A"), "migrations/0003_c.sql": file("C")}, 0, "want version 2"},
		{"repeat", fstest.MapFS{"migrations/0001_a.sql": file("A"), "migrations/001_b.sql": file("B")}, 0, "want version 2"},
		{"bad name", fstest.MapFS{"migrations/init.sql": file("A")}, 0, "NNNN_description"},
		{"zero", fstest.MapFS{"migrations/0000_a.sql": file("A")}, 0, "NNNN_description"},
		{"none", fstest.MapFS{}, 0, "no migrations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := LoadMigrations("test", tt.fs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(ms) != tt.want {
				t.Fatalf("got %d migrations, err %v; want %d", len(ms), err, tt.want)
			}
			if ms[0].SQL != "A" {
				t.Errorf("first migration %q, want A", ms[0].SQL)
			}
		})
	}
}

func TestIDGen(t *testing.T) {
	now := time.UnixMilli(0x0123456789ab)
	g := newIDGen(now)
	prev := ""
	for range 1000 {
		id := g.next()
		if len(id) != 36 || id[14] != '7' || !strings.ContainsRune("89ab", rune(id[19])) || !strings.HasPrefix(id, "01234567-89ab-") {
			t.Fatalf("ID %q is not a version 7 UUID for %v", id, now)
		}
		if id <= prev {
			t.Fatalf("ID %q after %q: not increasing", id, prev)
		}
		prev = id
	}
	if a, b := newIDGen(now).next(), newIDGen(now).next(); a == b {
		t.Errorf("two batches in one millisecond start at the same ID %q", a)
	}
}

func TestEntrySelectorsRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		stored  []string
		wantErr string
	}{
		{"value with colons", []string{"k8s:pod-label:app:web", "unix:uid:0"}, ""},
		{"empty", nil, ""},
		{"no colon", []string{"broken"}, "lacks a ':'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss, err := DecodeEntrySelectors(tt.stored)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			back := EncodeEntrySelectors(ss)
			if len(back) != len(tt.stored) {
				t.Fatalf("round trip %q -> %q", tt.stored, back)
			}
			for i := range back {
				if back[i] != tt.stored[i] {
					t.Errorf("round trip %q -> %q", tt.stored, back)
				}
			}
		})
	}
}
