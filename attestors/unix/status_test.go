package unix_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	unixattestor "github.com/hallmarkid/hallmark/attestors/unix"
)

func readFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseStatusFixtures(t *testing.T) {
	tests := []struct {
		file       string
		uid, gid   uint32
		wantGroups []uint32
	}{
		{file: "status-groups.txt", wantGroups: []uint32{4, 24, 27, 1000}},
		{file: "status-nogroups.txt"},
		{file: "status-nobody.txt", uid: 65534, gid: 65534},
		{file: "status-mixed-ids.txt", uid: 2000, gid: 2002, wantGroups: []uint32{5, 6}},
		{file: "status-kthread.txt"},
		{file: "status-zombie.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			uid, gid, groups, err := unixattestor.ParseStatus([]byte(readFixture(t, tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			if uid != tt.uid || gid != tt.gid || !slices.Equal(groups, tt.wantGroups) {
				t.Errorf("got uid %d gid %d groups %v, want %d %d %v", uid, gid, groups, tt.uid, tt.gid, tt.wantGroups)
			}
		})
	}
}

func TestParseStatusErrors(t *testing.T) {
	real := readFixture(t, "status-groups.txt")
	uidLine := "Uid:\t0\t0\t0\t0\n"
	if !strings.Contains(real, uidLine) {
		t.Fatal("fixture has no plain Uid line")
	}
	replace := func(old, new string) string { return strings.Replace(real, old, new, 1) }
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{name: "empty", input: "", wantErr: "empty"},
		{name: "no final newline", input: strings.TrimSuffix(real, "\n"), wantErr: "truncated: no final newline"},
		{name: "cut before Uid", input: real[:strings.Index(real, "Uid:")], wantErr: "truncated: Uid, Gid or Groups missing"},
		{name: "cut inside Uid", input: real[:strings.Index(real, "Uid:")+6] + "\n", wantErr: "Uid: want 4 tab-separated IDs"},
		{name: "not beginning with Name", input: "Uid:\t0\t0\t0\t0\n" + real, wantErr: "does not begin with Name"},
		{name: "binary garbage", input: "\x00\x01\x02\n", wantErr: "line 1: malformed"},
		{name: "line without colon", input: replace("Umask:\t0022\n", "Umask 0022\n"), wantErr: "line 2: malformed"},
		{name: "key with space", input: replace("Umask:", "Um ask:"), wantErr: "line 2: malformed"},
		{name: "duplicate Uid", input: replace(uidLine, uidLine+"Uid:\t1000\t1000\t1000\t1000\n"), wantErr: "duplicate Uid"},
		{name: "duplicate Gid", input: replace("Gid:", "Gid:\t1\t1\t1\t1\nGid:"), wantErr: "duplicate Gid"},
		{name: "duplicate Groups", input: replace("Groups:", "Groups:\t \nGroups:"), wantErr: "duplicate Groups"},
		{name: "three uids", input: replace(uidLine, "Uid:\t0\t0\t0\n"), wantErr: "want 4 tab-separated IDs"},
		{name: "five uids", input: replace(uidLine, "Uid:\t0\t0\t0\t0\t0\n"), wantErr: "want 4 tab-separated IDs"},
		{name: "spaces for tabs", input: replace(uidLine, "Uid: 0 0 0 0\n"), wantErr: "want 4 tab-separated IDs"},
		{name: "negative uid", input: replace(uidLine, "Uid:\t0\t-1\t0\t0\n"), wantErr: "bad ID"},
		{name: "signed uid", input: replace(uidLine, "Uid:\t0\t+1\t0\t0\n"), wantErr: "bad ID"},
		{name: "leading zero", input: replace(uidLine, "Uid:\t0\t01\t0\t0\n"), wantErr: "bad ID"},
		{name: "uid overflow", input: replace(uidLine, "Uid:\t0\t4294967296\t0\t0\n"), wantErr: "bad ID"},
		{name: "hex uid", input: replace(uidLine, "Uid:\t0\t0x10\t0\t0\n"), wantErr: "bad ID"},
		{name: "empty uid", input: replace(uidLine, "Uid:\t0\t\t0\t0\n"), wantErr: "bad ID"},
		{name: "groups double space", input: replace("4 24", "4  24"), wantErr: "Groups: bad ID"},
		{name: "groups two trailing spaces", input: replace("1000 \n", "1000  \n"), wantErr: "trailing separator"},
		{name: "groups garbage", input: replace("4 24", "4 x"), wantErr: "Groups: bad ID"},
		{name: "groups no tab", input: replace("Groups:\t", "Groups:"), wantErr: "Groups: missing tab"},
		{name: "too many groups", input: "Name:\tx\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t" + strings.Repeat("1 ", 65537) + "\n", wantErr: "more than 65536 groups"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := unixattestor.ParseStatus([]byte(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseStatusOldGroupsFormat(t *testing.T) {
	// Kernels before 4.x wrote every group followed by a space and an
	// empty list as nothing at all.
	for _, groups := range []string{"", " ", "7 8 ", "7 8"} {
		in := "Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t" + groups + "\n"
		uid, gid, _, err := unixattestor.ParseStatus([]byte(in))
		if err != nil || uid != 2 || gid != 6 {
			t.Errorf("Groups %q: uid %d gid %d err %v", groups, uid, gid, err)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	ents, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "status-") {
			f.Add([]byte(readFixture(f, e.Name())))
		}
	}
	f.Add([]byte("Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t9 10 \n"))
	f.Add([]byte("Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t\n"))
	f.Add([]byte("Name:\tx\nUid:\t1\t2\t3\nGid:\t5\t6\t7\t8\nGroups:\t\n"))
	f.Add([]byte("Name:\tx\nUid:\t4294967295\t2\t3\t4\n"))
	f.Add([]byte("Name:\n"))
	f.Add([]byte(":\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		uid, gid, groups, err := unixattestor.ParseStatus(b)
		if err != nil {
			return
		}
		if len(groups) > 65536 {
			t.Fatalf("%d groups", len(groups))
		}
		// Whatever parses must be what the kernel would have written for
		// those IDs: rendering it again must parse to the same values.
		var gs []string
		for _, g := range groups {
			gs = append(gs, fmt.Sprint(g))
		}
		again := fmt.Sprintf("Name:\tx\nUid:\t9\t%d\t9\t9\nGid:\t9\t%d\t9\t9\nGroups:\t%s \n", uid, gid, strings.Join(gs, " "))
		uid2, gid2, groups2, err := unixattestor.ParseStatus([]byte(again))
		if err != nil || uid2 != uid || gid2 != gid || !slices.Equal(groups, groups2) {
			t.Fatalf("round trip: %d %d %v vs %d %d %v (%v)", uid, gid, groups, uid2, gid2, groups2, err)
		}
	})
}
