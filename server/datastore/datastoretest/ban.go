package datastoretest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// testAgentBan: a ban keeps the record, marked banned; the record then
// cannot change (UpdateAgent) nor be created again (CreateAgent) until it
// is deleted, which lifts the ban. Banned is never set by Create or Update.
func testAgentBan(t *testing.T, s datastore.Store) {
	c := ctx(t)
	a, other := agent("banned"), agent("bystander")
	a.Banned = true // ignored by CreateAgent
	for _, x := range []datastore.Agent{a, other} {
		if err := s.CreateAgent(c, x); err != nil {
			t.Fatalf("CreateAgent: %v", err)
		}
	}
	if got, err := s.GetAgent(c, a.ID); err != nil || got.Banned {
		t.Fatalf("CreateAgent with Banned set: banned=%v (err %v), want false", got.Banned, err)
	}
	if err := s.BanAgent(c, "spiffe://example.org/agent/nobody"); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("BanAgent of an unknown agent: %v, want ErrNotFound", err)
	}
	before, _ := s.GetAgent(c, a.ID)
	if err := s.BanAgent(c, a.ID); err != nil {
		t.Fatalf("BanAgent: %v", err)
	}
	if err := s.BanAgent(c, a.ID); err != nil {
		t.Errorf("BanAgent of a banned agent: %v, want success", err)
	}
	got, err := s.GetAgent(c, a.ID)
	if err != nil {
		t.Fatalf("GetAgent of a banned agent: %v", err)
	}
	want := before
	want.Banned, want.UpdatedAt = true, got.UpdatedAt
	if d := diffAgent(got, want); d != "" {
		t.Errorf("banned agent: %s (only Banned and UpdatedAt may change)", d)
	}
	if got.UpdatedAt.Before(before.UpdatedAt) {
		t.Errorf("UpdatedAt went back from %v to %v", before.UpdatedAt, got.UpdatedAt)
	}

	// A banned record does not change.
	upd := a
	upd.Banned = false
	upd.SerialNumber = "2002"
	upd.ExpiresAt = base.Add(time.Hour)
	if err := s.UpdateAgent(c, upd); !errors.Is(err, datastore.ErrBanned) {
		t.Errorf("UpdateAgent of a banned agent: %v, want ErrBanned", err)
	}
	if err := s.CreateAgent(c, upd); !errors.Is(err, datastore.ErrAlreadyExists) {
		t.Errorf("CreateAgent over a banned agent: %v, want ErrAlreadyExists", err)
	}
	if again, err := s.GetAgent(c, a.ID); err != nil || !again.Banned || again.SerialNumber != a.SerialNumber {
		t.Errorf("after refused writes: banned=%v serial=%q (err %v), want banned with serial %q", again.Banned, again.SerialNumber, err, a.SerialNumber)
	}

	// Listing shows the ban; the bystander is untouched.
	list, err := s.ListAgents(c)
	if err != nil {
		t.Fatalf("ListAgents: %v", err)
	}
	banned := map[string]bool{}
	for _, l := range list {
		banned[l.ID] = l.Banned
	}
	if len(list) != 2 || !banned[a.ID] || banned[other.ID] {
		t.Errorf("ListAgents: banned flags %v, want only %s", banned, a.ID)
	}
	if err := s.UpdateAgent(c, other); err != nil {
		t.Errorf("UpdateAgent of an agent that is not banned: %v", err)
	}

	// Deleting lifts the ban: the agent attests afresh.
	if err := s.DeleteAgent(c, a.ID); err != nil {
		t.Fatalf("DeleteAgent of a banned agent: %v", err)
	}
	if err := s.CreateAgent(c, upd); err != nil {
		t.Fatalf("CreateAgent after the ban was lifted: %v", err)
	}
	if got, err := s.GetAgent(c, a.ID); err != nil || got.Banned || got.SerialNumber != upd.SerialNumber {
		t.Errorf("after unban and create: banned=%v serial=%q (err %v)", got.Banned, got.SerialNumber, err)
	}
}

// testAgentBanRace: renewals racing a ban either land before it (and the
// ban then holds their serial) or are refused with ErrBanned; none lands
// after it, and the record ends banned.
func testAgentBanRace(t *testing.T, s datastore.Store) {
	c := ctx(t)
	a := agent("ban-race")
	if err := s.CreateAgent(c, a); err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied []string
		others  []error
	)
	start := make(chan struct{})
	for i := range 20 {
		wg.Go(func() {
			u := a
			u.SerialNumber = fmt.Sprint(5000 + i)
			<-start
			err := s.UpdateAgent(ctx(t), u)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				applied = append(applied, u.SerialNumber)
			case !errors.Is(err, datastore.ErrBanned):
				others = append(others, err)
			}
		})
	}
	var banErr error
	wg.Go(func() {
		<-start
		banErr = s.BanAgent(ctx(t), a.ID)
	})
	close(start)
	wg.Wait()
	if banErr != nil {
		t.Fatalf("BanAgent: %v", banErr)
	}
	for _, err := range others {
		t.Errorf("UpdateAgent: unexpected error %v", err)
	}
	got, err := s.GetAgent(c, a.ID)
	if err != nil || !got.Banned {
		t.Fatalf("after the race: banned=%v (err %v), want banned", got.Banned, err)
	}
	// Whatever serial the record holds was written before the ban: either
	// the original or one of the updates that succeeded.
	ok := got.SerialNumber == a.SerialNumber
	for _, s := range applied {
		ok = ok || s == got.SerialNumber
	}
	if !ok {
		t.Errorf("banned record holds serial %q, which no successful write put there", got.SerialNumber)
	}
	// And nothing changes it now.
	u := a
	u.SerialNumber = "9999"
	if err := s.UpdateAgent(c, u); !errors.Is(err, datastore.ErrBanned) {
		t.Errorf("UpdateAgent after the race: %v, want ErrBanned", err)
	}
}

// testAgentPromoteSerial: a renewal's pending serial becomes the agent's
// current one exactly once, only if it is still the pending one, never on
// a banned agent.
func testAgentPromoteSerial(t *testing.T, s datastore.Store) {
	c := ctx(t)
	a := agent("promote")
	a.SerialNumber, a.NewSerialNumber = "1", "2"
	if err := s.CreateAgent(c, a); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id, serial string
		want             error
	}{
		{name: "unknown agent", id: "spiffe://example.org/agent/nobody", serial: "2", want: datastore.ErrNotFound},
		{name: "not the pending serial", id: a.ID, serial: "1", want: datastore.ErrNotFound},
		{name: "empty serial", id: a.ID, serial: "", want: datastore.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.PromoteAgentSerial(c, tc.id, tc.serial); !errors.Is(err, tc.want) {
				t.Fatalf("PromoteAgentSerial: %v, want %v", err, tc.want)
			}
		})
	}
	// Concurrent first uses: one promotes, the others find nothing pending.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
		errs []error
	)
	for range 10 {
		wg.Go(func() {
			err := s.PromoteAgentSerial(ctx(t), a.ID, "2")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, datastore.ErrNotFound):
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || len(errs) > 0 {
		t.Fatalf("%d promotions succeeded (errors %v), want exactly 1", wins, errs)
	}
	got, err := s.GetAgent(c, a.ID)
	if err != nil || got.SerialNumber != "2" || got.NewSerialNumber != "" {
		t.Fatalf("after promotion: serial %q pending %q (err %v), want 2 and none", got.SerialNumber, got.NewSerialNumber, err)
	}

	// A pending serial replaced by another renewal cannot be promoted.
	got.NewSerialNumber = "3"
	if err := s.UpdateAgent(c, got); err != nil {
		t.Fatal(err)
	}
	got.SerialNumber, got.NewSerialNumber = "2", "4" // the agent renewed again with 2
	if err := s.UpdateAgent(c, got); err != nil {
		t.Fatal(err)
	}
	if err := s.PromoteAgentSerial(c, a.ID, "3"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("promoting a replaced pending serial: %v, want ErrNotFound", err)
	}
	if err := s.BanAgent(c, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.PromoteAgentSerial(c, a.ID, "4"); !errors.Is(err, datastore.ErrBanned) {
		t.Fatalf("promoting on a banned agent: %v, want ErrBanned", err)
	}
	if got, _ := s.GetAgent(c, a.ID); got.SerialNumber != "2" || got.NewSerialNumber != "4" {
		t.Fatalf("banned record changed: serial %q pending %q", got.SerialNumber, got.NewSerialNumber)
	}
}
