package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
)

// entryUpdate is SPIRE's `entry update`: the entry with -entryID becomes
// what the flags say (every field; the selectors given replace the old
// set, an omitted TTL is the server default again), or each entry of a
// -data file (SPIRE's format, with "entry_id") becomes what the file says.
func entryUpdate(fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	entryID := fs.String("entryID", "", "the ID of the entry to update")
	spiffeID := fs.String("spiffeID", "", "the SPIFFE ID of the workload")
	parentID := fs.String("parentID", "", "the SPIFFE ID of the parent (an agent, or a node entry's ID)")
	var selectors, dns, fedWith stringList
	fs.Var(&selectors, "selector", "a colon-delimited type:value selector; repeatable; replaces the entry's selectors")
	fs.Var(&dns, "dns", "a DNS name for the SVID; repeatable")
	fs.Var(&fedWith, "federatesWith", "a trust domain ID to federate with; repeatable")
	x509TTL := fs.Int("x509SVIDTTL", 0, "X.509 SVID TTL in seconds (0: server default)")
	jwtTTL := fs.Int("jwtSVIDTTL", 0, "JWT SVID TTL in seconds (0: server default)")
	node := fs.Bool("node", false, "a node entry: parented by the server, matching agents by selector")
	unsupported := defineUnsupportedEntryFlags(fs)
	hint := fs.String("hint", "", "a hint for workloads that get several SVIDs")
	data := fs.String("data", "", "path to a JSON file of entries ({\"entries\": [{\"entry_id\": ..., ...}]}); - for stdin")
	output := outputFlag(fs)
	return func(ctx context.Context, c apiv1.AdminClient) error {
		if err := checkOutput(*output); err != nil {
			return err
		}
		if err := unsupported.check(); err != nil {
			return err
		}
		var entries []*apiv1.Entry
		if *data != "" {
			if *entryID != "" || *spiffeID != "" || *parentID != "" || len(selectors) > 0 {
				return errors.New("-data cannot be combined with -entryID, -spiffeID, -parentID or -selector")
			}
			raw, err := readDataFile(*data)
			if err != nil {
				return err
			}
			if entries, err = parseEntries(raw, *data); err != nil {
				return err
			}
			for i, e := range entries {
				if e.GetId() == "" {
					return fmt.Errorf("%s: entry %d: entry_id is required", *data, i)
				}
			}
		} else {
			e, err := updateFromFlags(updateFlags{
				entryID: *entryID, spiffeID: *spiffeID, parentID: *parentID, node: *node, selectors: selectors,
				x509TTL: *x509TTL, jwtTTL: *jwtTTL, dns: dns, federatesWith: fedWith, hint: *hint,
			})
			if err != nil {
				return err
			}
			entries = []*apiv1.Entry{e}
		}
		resp, err := c.UpdateEntries(ctx, &apiv1.UpdateEntriesRequest{Entries: entries})
		if err != nil {
			return err
		}
		return printEntryResults(stdout, "update", *output, resp.GetResults())
	}
}

// updateFlags are the flags of a single-entry update.
type updateFlags struct {
	entryID, spiffeID, parentID string
	node                        bool
	selectors, dns              []string
	federatesWith               []string
	x509TTL, jwtTTL             int
	hint                        string
}

// updateFromFlags builds the entry an update replaces entryID with.
func updateFromFlags(f updateFlags) (*apiv1.Entry, error) {
	switch {
	case f.entryID == "":
		return nil, errors.New("-entryID is required")
	case f.spiffeID == "":
		return nil, errors.New("-spiffeID is required")
	case len(f.selectors) == 0:
		return nil, errors.New("at least one -selector is required")
	case f.node && f.parentID != "":
		return nil, errors.New("-node and -parentID are mutually exclusive")
	case !f.node && f.parentID == "":
		return nil, errors.New("-parentID is required unless -node is set")
	}
	for _, ttl := range []int{f.x509TTL, f.jwtTTL} {
		if ttl < 0 || ttl > int(registration.MaxTTL.Seconds()) {
			return nil, fmt.Errorf("TTL %d s out of range", ttl)
		}
	}
	e := &apiv1.Entry{Id: f.entryID, SpiffeId: f.spiffeID, ParentId: f.parentID, X509SvidTtl: int32(f.x509TTL),
		JwtSvidTtl: int32(f.jwtTTL), DnsNames: f.dns, FederatesWith: f.federatesWith, Hint: f.hint}
	if f.node {
		td, _, _ := strings.Cut(strings.TrimPrefix(f.spiffeID, "spiffe://"), "/")
		e.ParentId = "spiffe://" + td + "/hallmark/server"
	}
	for _, s := range f.selectors {
		sel, err := registration.ParseSelector(s)
		if err != nil {
			return nil, err
		}
		e.Selectors = append(e.Selectors, &apiv1.Selector{Type: sel.Type, Value: sel.Value})
	}
	return e, nil
}
