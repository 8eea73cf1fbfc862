package sqlstoretest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
)

const (
	killWriters   = 4
	killBatchSize = 5
)

// helperEnv names the variable holding the database the kill helper
// writes to; when it is unset the helper does nothing.
func (h *Harness) helperEnv() string {
	return "HALLMARK_" + strings.ToUpper(h.Name) + "_KILL_HELPER_DB"
}

// KillHelper is the child process of Kill9Durability, run as the
// backend's TestHelperWriter: it writes concurrently and prints one line
// per acknowledged write, until killed.
func KillHelper(t *testing.T, h *Harness) {
	db := os.Getenv(h.helperEnv())
	if db == "" {
		return // not running as the child
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // in case the parent dies
	defer cancel()
	s, err := h.Open(ctx, db, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	var (
		outMu sync.Mutex
		wg    sync.WaitGroup
	)
	ack := func(lines string) {
		outMu.Lock()
		defer outMu.Unlock()
		if _, err := io.WriteString(os.Stdout, lines); err != nil {
			os.Exit(3)
		}
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(4)
	}
	for g := range killWriters {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				hint := fmt.Sprintf("g%d-b%d", g, i)
				batch := make([]registration.Entry, killBatchSize)
				for j := range batch {
					batch[j] = registration.Entry{
						SPIFFEID:  spiffeid.RequireFromPath(td, fmt.Sprintf("/kill/%s/%d", hint, j)),
						ParentID:  spiffeid.RequireFromPath(td, "/agent/kill"),
						Selectors: []registration.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(j)}},
						DNSNames:  []string{"kill.example.org"},
						Hint:      hint,
					}
				}
				res, err := s.CreateEntries(ctx, batch)
				if err != nil {
					fail(err)
				}
				var b strings.Builder
				for _, r := range res {
					if r.Err != nil {
						fail(r.Err)
					}
					fmt.Fprintf(&b, "E %s %s\n", r.Entry.ID, hint)
				}
				ack(b.String())

				key := fmt.Sprintf("counter-%d", g)
				if err := s.PutKV(ctx, key, []byte(strconv.Itoa(i))); err != nil {
					fail(err)
				}
				ack(fmt.Sprintf("K %s %d\n", key, i))
			}
		})
	}
	wg.Wait()
	os.Exit(0)
}

// Kill9Durability SIGKILLs a process (the backend's TestHelperWriter) in
// the middle of concurrent writes, then checks that the database is
// intact, that every write the child acknowledged is there, that no batch
// is half there, and that a new process carries on at once.
func Kill9Durability(t *testing.T, h *Harness) {
	db := h.NewDB(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), h.helperEnv()+"="+db)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return // a line cut short by the kill was never acknowledged
			}
			lines <- strings.TrimSuffix(line, "\n")
		}
	}()

	const enough = 400 // acknowledged entries before the kill
	var (
		acked    = map[string]string{} // entry ID -> batch hint
		counters = map[string]int{}    // KV key -> last acknowledged value
	)
	handle := func(line string) {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "E":
			acked[f[1]] = f[2]
		case len(f) == 3 && f[0] == "K":
			n, _ := strconv.Atoi(f[2])
			counters[f[1]] = n
		}
	}
	deadline := time.After(3 * time.Second)
collect:
	for len(acked) < enough {
		select {
		case line, ok := <-lines:
			if !ok {
				break collect
			}
			handle(line)
		case <-deadline:
			break collect
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	for line := range lines { // acknowledgements already in the pipe count too
		handle(line)
	}
	err = cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed mid-way: %v; stderr:\n%s", err, stderr.String())
	}
	if len(acked) < 50 {
		t.Fatalf("only %d acknowledged entries before the kill; stderr:\n%s", len(acked), stderr.String())
	}
	t.Logf("killed after %d acknowledged entries", len(acked))

	checkRaw(t, h, db)

	s := h.open(t, db)
	ctx := t.Context()
	list, _, err := s.ListEntries(ctx)
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	present := map[string]bool{}
	perBatch := map[string]int{}
	for _, e := range list {
		present[e.ID] = true
		perBatch[e.Hint]++
	}
	for id, hint := range acked {
		if !present[id] {
			t.Errorf("acknowledged entry %s (batch %s) lost", id, hint)
		}
	}
	for hint, n := range perBatch {
		if n != killBatchSize {
			t.Errorf("batch %s has %d of %d entries", hint, n, killBatchSize)
		}
	}
	for key, n := range counters {
		v, err := s.GetKV(ctx, key)
		if err != nil {
			t.Errorf("GetKV %s: %v", key, err)
			continue
		}
		// The child may have been killed after committing n+1 but before
		// printing it.
		if got, _ := strconv.Atoi(string(v)); got != n && got != n+1 {
			t.Errorf("%s = %s, acknowledged %d", key, v, n)
		}
	}
	// A new process carries on at once: the dead one holds no lock.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.CreateEntries(wctx, []registration.Entry{Entry("/after-kill")}); err != nil {
		t.Errorf("CreateEntries after the kill: %v", err)
	}
}

// checkRaw checks the raw tables, before anything of ours touches them:
// the database ended the dead client's transactions, and nothing
// half-written may remain.
func checkRaw(t *testing.T, h *Harness, db string) {
	ctx := t.Context()
	raw := h.Raw(t, db)
	if h.Intact != nil {
		h.Intact(t, raw)
	}
	var orphans, missing, badRev, gaps int
	if err := raw.QueryRow(ctx, `SELECT count(*) FROM entries e WHERE NOT EXISTS
		(SELECT 1 FROM entry_events v WHERE v.entry_id = e.id AND v.revision = e.revision AND NOT v.deleted)`).Scan(&missing); err != nil {
		t.Fatal(err)
	}
	if err := raw.QueryRow(ctx, `SELECT count(*) FROM entry_events v WHERE NOT EXISTS
		(SELECT 1 FROM entries e WHERE e.id = v.entry_id)`).Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	if err := raw.QueryRow(ctx, `SELECT count(*) FROM revision r WHERE r.value != (SELECT coalesce(max(revision), 0) FROM entry_events)`).Scan(&badRev); err != nil {
		t.Fatal(err)
	}
	if err := raw.QueryRow(ctx, `SELECT coalesce(max(revision), 0) - count(*) FROM entry_events`).Scan(&gaps); err != nil {
		t.Fatal(err)
	}
	if missing+orphans+badRev+gaps != 0 {
		t.Errorf("partial writes: %d entries without their event, %d events without their entry, revision counter off: %v, %d revision gaps",
			missing, orphans, badRev != 0, gaps)
	}
}
