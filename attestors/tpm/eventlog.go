package tpm

import (
	"crypto"
	"errors"
	"fmt"
	"sort"

	"github.com/google/go-attestation/attest"
)

// eventLogResult is what a replayed event log says.
type eventLogResult struct {
	// events are the events of the quoted PCRs, verified by replay.
	events []attest.Event
	// secureBoot is nil when the state could not be determined.
	secureBoot *bool
	// secureBootErr says why secureBoot is nil.
	secureBootErr error
}

// ReplayEventLog parses a binary measurement log and replays it against
// the given PCR values of one bank, which must be the quoted ones only:
// events of other PCRs are ignored, never trusted. A PCR with events must
// replay to its value. With PCR 7 among them, the Secure Boot state is
// read from the verified events.
func ReplayEventLog(log []byte, bank crypto.Hash, pcrs map[int][]byte) (secureBoot *bool, err error) {
	r, err := replayEventLog(log, bank, pcrs)
	if err != nil {
		return nil, err
	}
	return r.secureBoot, nil
}

func replayEventLog(log []byte, bank crypto.Hash, pcrs map[int][]byte) (res eventLogResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = eventLogResult{}, fmt.Errorf("tpm: event log: malformed (%v)", r)
		}
	}()
	if len(log) > MaxEventLogSize {
		return res, fmt.Errorf("tpm: event log of %d bytes exceeds %d", len(log), MaxEventLogSize)
	}
	el, err := attest.ParseEventLog(log)
	if err != nil {
		return res, fmt.Errorf("tpm: event log: parse: %w", err)
	}
	var quoted []attest.PCR
	idx := make([]int, 0, len(pcrs))
	for i := range pcrs {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		quoted = append(quoted, attest.PCR{Index: i, Digest: pcrs[i], DigestAlg: bank})
	}
	events, err := el.Verify(quoted)
	if err != nil {
		var re attest.ReplayError
		if errors.As(err, &re) {
			return res, fmt.Errorf("tpm: event log does not replay to the quoted PCRs %v", re.InvalidPCRs)
		}
		return res, fmt.Errorf("tpm: event log: replay: %w", err)
	}
	res.events = events
	has7 := false
	for _, e := range events {
		has7 = has7 || e.Index == 7
	}
	switch _, quoted7 := pcrs[7]; {
	case !quoted7:
		res.secureBootErr = errors.New("PCR 7 is not quoted")
	case !has7:
		res.secureBootErr = errors.New("the event log has no PCR 7 events")
	default:
		sb, err := attest.ParseSecurebootState(events)
		if err != nil {
			res.secureBootErr = err
		} else {
			res.secureBoot = &sb.Enabled
		}
	}
	return res, nil
}
