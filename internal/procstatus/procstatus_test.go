package procstatus_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/internal/procstatus"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseFixtures(t *testing.T) {
	tests := []struct {
		file string
		want procstatus.Status
	}{
		{file: "status-groups.txt", want: procstatus.Status{Groups: []uint32{4, 24, 27, 1000}}},
		{file: "status-nogroups.txt"},
		{file: "status-nobody.txt", want: procstatus.Status{
			UID: [4]uint32{65534, 65534, 65534, 65534}, GID: [4]uint32{65534, 65534, 65534, 65534}}},
		{file: "status-mixed-ids.txt", want: procstatus.Status{
			UID: [4]uint32{1000, 2000, 3000, 2000}, GID: [4]uint32{1001, 2002, 3003, 2002}, Groups: []uint32{5, 6}}},
		{file: "status-kthread.txt"},
		{file: "status-zombie.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := procstatus.Parse(fixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	real := string(fixture(t, "status-groups.txt"))
	uidLine := "Uid:\t0\t0\t0\t0\n"
	replace := func(old, new string) string {
		if !strings.Contains(real, old) {
			t.Fatalf("fixture lacks %q", old)
		}
		return strings.Replace(real, old, new, 1)
	}
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{name: "empty", input: "", wantErr: "procstatus: empty status"},
		{name: "no final newline", input: strings.TrimSuffix(real, "\n"), wantErr: "truncated: no final newline"},
		{name: "cut before Gid", input: real[:strings.Index(real, "Gid:")], wantErr: "Uid, Gid or Groups missing"},
		{name: "not beginning with Name", input: uidLine + real, wantErr: "does not begin with Name"},
		{name: "line without colon", input: replace("Umask:\t0022\n", "Umask 0022\n"), wantErr: "line 2: malformed"},
		{name: "duplicate Gid", input: replace("Gid:", "Gid:\t1\t1\t1\t1\nGid:"), wantErr: "duplicate Gid"},
		{name: "three gids", input: replace("Gid:\t0\t0\t0\t0\n", "Gid:\t0\t0\t0\n"), wantErr: "Gid: want 4 tab-separated IDs"},
		{name: "saved uid negative", input: replace(uidLine, "Uid:\t0\t0\t-1\t0\n"), wantErr: "Uid: bad ID"},
		{name: "fs uid overflow", input: replace(uidLine, "Uid:\t0\t0\t0\t4294967296\n"), wantErr: "Uid: bad ID"},
		{name: "trailing tab", input: replace(uidLine, "Uid:\t0\t0\t0\t0\t\n"), wantErr: "want 4 tab-separated IDs"},
		{name: "groups garbage", input: replace("4 24", "4 x"), wantErr: "Groups: bad ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := procstatus.Parse([]byte(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	base := procstatus.Status{UID: [4]uint32{1, 2, 3, 4}, GID: [4]uint32{5, 6, 7, 8}, Groups: []uint32{9, 10}}
	tests := []struct {
		name   string
		change func(*procstatus.Status)
		want   bool
	}{
		{name: "same", change: func(*procstatus.Status) {}, want: true},
		{name: "real uid", change: func(s *procstatus.Status) { s.UID[procstatus.Real] = 0 }},
		{name: "saved gid", change: func(s *procstatus.Status) { s.GID[procstatus.Saved] = 0 }},
		{name: "fs gid", change: func(s *procstatus.Status) { s.GID[procstatus.Filesystem] = 0 }},
		{name: "group dropped", change: func(s *procstatus.Status) { s.Groups = s.Groups[:1] }},
		{name: "group replaced", change: func(s *procstatus.Status) { s.Groups = []uint32{9, 11} }},
		{name: "groups reordered", change: func(s *procstatus.Status) { s.Groups = []uint32{10, 9} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			o.Groups = slices.Clone(base.Groups)
			tt.change(&o)
			if got := base.Equal(o); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadSelf(t *testing.T) {
	st, err := procstatus.Read("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if st.UID[procstatus.Effective] != uint32(os.Geteuid()) || st.GID[procstatus.Effective] != uint32(os.Getegid()) ||
		st.UID[procstatus.Real] != uint32(os.Getuid()) {
		t.Errorf("Read(/proc/self/status) = %+v, want uid %d/%d gid %d", st, os.Getuid(), os.Geteuid(), os.Getegid())
	}
	_, err = procstatus.Read("/proc/0/status")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read(/proc/0/status) = %v, want not exist", err)
	}
	big := filepath.Join(t.TempDir(), "status")
	if err := os.WriteFile(big, []byte(strings.Repeat("A:\n", procstatus.MaxLen/3+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := procstatus.Read(big); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("Read(huge) = %v, want longer than", err)
	}
}

func FuzzParse(f *testing.F) {
	ents, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "status-") {
			f.Add(fixture(f, e.Name()))
		}
	}
	f.Add([]byte("Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t9 10 \n"))
	f.Add([]byte("Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t\n"))
	f.Add([]byte("Name:\tx\nUid:\t1\t2\t3\nGid:\t5\t6\t7\t8\nGroups:\t\n"))
	f.Add([]byte("Name:\tx\nUid:\t4294967295\t2\t3\t4\n"))
	f.Add([]byte("Name:\n"))
	f.Add([]byte(":\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := procstatus.Parse(b)
		if err != nil {
			if st.Groups != nil || st.UID != [4]uint32{} || st.GID != [4]uint32{} {
				t.Fatalf("error %v with a value %+v", err, st)
			}
			return
		}
		if len(st.Groups) > procstatus.MaxGroups {
			t.Fatalf("%d groups", len(st.Groups))
		}
		// Whatever parses must be what the kernel would have written for
		// those IDs: rendering it again must parse to the same values.
		var gs []string
		for _, g := range st.Groups {
			gs = append(gs, fmt.Sprint(g))
		}
		again := fmt.Sprintf("Name:\tx\nUid:\t%d\t%d\t%d\t%d\nGid:\t%d\t%d\t%d\t%d\nGroups:\t%s \n",
			st.UID[0], st.UID[1], st.UID[2], st.UID[3], st.GID[0], st.GID[1], st.GID[2], st.GID[3], strings.Join(gs, " "))
		st2, err := procstatus.Parse([]byte(again))
		if err != nil || !st.Equal(st2) {
			t.Fatalf("round trip: %+v vs %+v (%v)", st, st2, err)
		}
	})
}

func BenchmarkReadSelf(b *testing.B) {
	for b.Loop() {
		if _, err := procstatus.Read("/proc/self/status"); err != nil {
			b.Fatal(err)
		}
	}
}

// ReadFD reads from the start at every call, whatever the descriptor's
// offset, grows past its first buffer, and agrees with Read.
func TestReadFD(t *testing.T) {
	self, err := procstatus.Read("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := procstatus.OpenRead("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer syscallClose(fd)
	for range 3 {
		got, err := procstatus.ReadFD(fd, "/proc/self/status")
		if err != nil || !got.Equal(self) {
			t.Fatalf("ReadFD = %+v, %v; Read = %+v", got, err, self)
		}
	}

	// A status with 3,000 supplementary groups: ~15 KiB, several reads.
	var groups []string
	var want []uint32
	for g := range 3000 {
		groups = append(groups, fmt.Sprint(100000+g))
		want = append(want, uint32(100000+g))
	}
	big := strings.Replace(string(fixture(t, "status-groups.txt")), "Groups:\t4 24 27 1000 \n", "Groups:\t"+strings.Join(groups, " ")+" \n", 1)
	path := filepath.Join(t.TempDir(), "status")
	if err := os.WriteFile(path, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	bfd, err := procstatus.OpenRead(path)
	if err != nil {
		t.Fatal(err)
	}
	defer syscallClose(bfd)
	got, err := procstatus.ReadFD(bfd, path)
	if err != nil || !slices.Equal(got.Groups, want) {
		t.Fatalf("ReadFD of %d bytes: %d groups, %v", len(big), len(got.Groups), err)
	}

	// A cut file fails (no final newline), never yields fewer groups.
	if err := os.WriteFile(path, []byte(big[:len(big)/2]), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := procstatus.ReadFD(bfd, path); err == nil {
		t.Fatal("ReadFD of a cut file succeeded")
	}
	if _, err := procstatus.ReadFD(-1, "nothing"); err == nil {
		t.Fatal("ReadFD of a bad descriptor succeeded")
	}
}

func syscallClose(fd int) { _ = os.NewFile(uintptr(fd), "").Close() }
