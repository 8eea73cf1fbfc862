package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
)

// unsupportedEntryFlags are SPIRE's `entry create|update` flags for
// features Hallmark does not have. Each is refused by name when set, never
// stored and ignored.
type unsupportedEntryFlags struct {
	entryExpiry                     *int64
	storeSVID, includeJTI, noPrefet *bool
	admin, downstream               *bool
}

func defineUnsupportedEntryFlags(fs *flag.FlagSet) unsupportedEntryFlags {
	return unsupportedEntryFlags{
		entryExpiry: fs.Int64("entryExpiry", 0, "not supported: Hallmark entries do not expire (refused unless 0)"),
		storeSVID:   fs.Bool("storeSVID", false, "not supported: Hallmark has no SVIDStore plugins (refused when set)"),
		includeJTI:  fs.Bool("jwtSVIDIncludeJTI", false, "not supported: Hallmark JWT-SVIDs carry no jti claim (refused when set)"),
		noPrefet:    fs.Bool("disableX509SVIDPrefetch", false, "not supported: agents always mint X.509-SVIDs ahead of use (refused when set)"),
		admin:       fs.Bool("admin", false, "not supported: no SVID grants access to Hallmark's admin API (refused when set)"),
		downstream:  fs.Bool("downstream", false, "not supported: Hallmark does not sign downstream CAs (refused when set)"),
	}
}

// check refuses each unsupported flag that is set, naming it.
func (u unsupportedEntryFlags) check() error {
	switch {
	case *u.entryExpiry != 0:
		return errors.New("-entryExpiry is not supported: Hallmark entries do not expire; delete the entry (entry delete) when it should end")
	case *u.storeSVID:
		return errors.New("-storeSVID is not supported: Hallmark has no SVIDStore plugins; fetch SVIDs over the Workload API or SDS")
	case *u.includeJTI:
		return errors.New("-jwtSVIDIncludeJTI is not supported: Hallmark JWT-SVIDs carry no jti claim")
	case *u.noPrefet:
		return errors.New("-disableX509SVIDPrefetch is not supported: Hallmark agents mint every entry's X.509-SVID ahead of use")
	case *u.admin:
		return errors.New("-admin is not supported: Hallmark's admin API is served only on the server's local socket and no SVID grants access to it")
	case *u.downstream:
		return errors.New("-downstream is not supported: Hallmark does not sign CA certificates for downstream servers")
	}
	return nil
}

func entryCreate(fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	entryID := fs.String("entryID", "", "a custom ID for the entry (optional; the server generates one otherwise)")
	spiffeID := fs.String("spiffeID", "", "the SPIFFE ID of the workload")
	parentID := fs.String("parentID", "", "the SPIFFE ID of the parent (an agent, or a node entry's ID)")
	var selectors, dns, fedWith stringList
	fs.Var(&selectors, "selector", "a colon-delimited type:value selector; repeatable")
	fs.Var(&dns, "dns", "a DNS name for the SVID; repeatable")
	fs.Var(&fedWith, "federatesWith", "a trust domain ID to federate with; repeatable")
	x509TTL := fs.Int("x509SVIDTTL", 0, "X.509 SVID TTL in seconds (0: server default)")
	jwtTTL := fs.Int("jwtSVIDTTL", 0, "JWT SVID TTL in seconds (0: server default)")
	node := fs.Bool("node", false, "a node entry: parented by the server, matching agents by selector")
	unsupported := defineUnsupportedEntryFlags(fs)
	hint := fs.String("hint", "", "a hint for workloads that get several SVIDs")
	data := fs.String("data", "", "path to a JSON file of entries (SPIRE's -data file or `entry show -output json`); - for stdin")
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
		} else {
			if len(selectors) == 0 {
				return errors.New("at least one -selector is required")
			}
			if *spiffeID == "" {
				return errors.New("-spiffeID is required")
			}
			e := &apiv1.Entry{Id: *entryID, SpiffeId: *spiffeID, ParentId: *parentID, X509SvidTtl: int32(*x509TTL),
				JwtSvidTtl: int32(*jwtTTL), DnsNames: dns, FederatesWith: fedWith, Hint: *hint}
			if *node {
				if *parentID != "" {
					return errors.New("-node and -parentID are mutually exclusive")
				}
				td, _, _ := strings.Cut(strings.TrimPrefix(*spiffeID, "spiffe://"), "/")
				e.ParentId = "spiffe://" + td + "/hallmark/server"
			} else if *parentID == "" {
				return errors.New("-parentID is required unless -node is set")
			}
			for _, s := range selectors {
				sel, err := registration.ParseSelector(s)
				if err != nil {
					return err
				}
				e.Selectors = append(e.Selectors, &apiv1.Selector{Type: sel.Type, Value: sel.Value})
			}
			entries = []*apiv1.Entry{e}
		}
		resp, err := c.CreateEntries(ctx, &apiv1.CreateEntriesRequest{Entries: entries})
		if err != nil {
			return err
		}
		return printEntryResults(stdout, "create", *output, resp.GetResults())
	}
}

// printEntryResults prints the results of a create or update (verb) in
// SPIRE's shapes and fails when any entry failed.
func printEntryResults(w io.Writer, verb, output string, results []*apiv1.EntryResult) error {
	var failed int
	for _, r := range results {
		if r.GetError() != "" {
			failed++
		}
	}
	switch {
	case output == "json":
		out := entryResultsJSON{Results: make([]entryResultJSON, 0, len(results))}
		for _, r := range results {
			out.Results = append(out.Results, entryResultJSON{Status: resultStatus(r.GetCode(), r.GetError()), Entry: toEntryJSON(r.GetEntry())})
		}
		if err := writeJSON(w, out); err != nil {
			return err
		}
	case len(results) > 100:
		past := map[string]string{"create": "Created", "update": "Updated"}[verb]
		fmt.Fprintf(w, "%s %d entries, %d failed\n", past, len(results)-failed, failed)
	default:
		for _, r := range results {
			if r.GetError() != "" {
				fmt.Fprintf(w, "Failed to %s the following entry (code: %s, msg: %q):\n", verb, codeName(r.GetCode(), r.GetError()), r.GetError())
			}
			printEntry(w, r.GetEntry())
			fmt.Fprintln(w)
		}
	}
	if failed > 0 {
		return fmt.Errorf("failed to %s %d of %d entries", verb, failed, len(results))
	}
	return nil
}

// codeName names a result's gRPC code; a failure without one (an older
// server) is Unknown.
func codeName(code int32, msg string) string {
	if code == 0 && msg != "" {
		code = int32(codes.Unknown)
	}
	return codes.Code(code).String()
}

func resultStatus(code int32, msg string) statusJSON {
	if msg == "" {
		return statusJSON{Code: 0, Message: "OK"}
	}
	if code == 0 {
		code = int32(codes.Unknown)
	}
	return statusJSON{Code: code, Message: msg}
}

// entryFilterFlags defines SPIRE's `entry show|count` filter flags and
// returns a function building the request once they are parsed.
func entryFilterFlags(fs *flag.FlagSet) func() (*apiv1.ListEntriesRequest, error) {
	spiffeID := fs.String("spiffeID", "", "the SPIFFE ID of the entries")
	parentID := fs.String("parentID", "", "the parent ID of the entries")
	hint := fs.String("hint", "", "the hint of the entries")
	downstream := fs.Bool("downstream", false, "only entries that describe a downstream server")
	var selectors, fedWith stringList
	fs.Var(&selectors, "selector", "a colon-delimited type:value selector; repeatable")
	fs.Var(&fedWith, "federatesWith", "a trust domain ID (spiffe://td) the entries federate with; repeatable")
	matchSel := fs.String("matchSelectorsOn", "superset", "how -selector matches: superset, exact, subset or any")
	matchFed := fs.String("matchFederatesWithOn", "superset", "how -federatesWith matches: superset, exact, subset or any")
	return func() (*apiv1.ListEntriesRequest, error) {
		req := &apiv1.ListEntriesRequest{Hint: *hint}
		if *downstream {
			req.Downstream = downstream
		}
		for _, f := range []struct {
			name string
			val  string
			dst  *string
		}{{"-spiffeID", *spiffeID, &req.SpiffeId}, {"-parentID", *parentID, &req.ParentId}} {
			if f.val == "" {
				continue
			}
			id, err := spiffeid.FromString(f.val)
			if err != nil {
				return nil, fmt.Errorf("%s %q: %w", f.name, f.val, err)
			}
			*f.dst = id.String()
		}
		var err error
		if req.SelectorMatch, err = parseMatch("-matchSelectorsOn", *matchSel); err != nil {
			return nil, err
		}
		if req.FederatesWithMatch, err = parseMatch("-matchFederatesWithOn", *matchFed); err != nil {
			return nil, err
		}
		for _, s := range selectors {
			sel, err := registration.ParseSelector(s)
			if err != nil {
				return nil, err
			}
			req.Selectors = append(req.Selectors, &apiv1.Selector{Type: sel.Type, Value: sel.Value})
		}
		for _, f := range fedWith {
			td, err := spiffeid.TrustDomainFromString(f)
			if err != nil {
				return nil, fmt.Errorf("-federatesWith %q: %w", f, err)
			}
			req.FederatesWith = append(req.FederatesWith, td.IDString())
		}
		return req, nil
	}
}

func parseMatch(name, v string) (apiv1.SelectorMatch, error) {
	m, ok := map[string]apiv1.SelectorMatch{
		"superset": apiv1.SelectorMatch_SELECTOR_MATCH_SUPERSET, "exact": apiv1.SelectorMatch_SELECTOR_MATCH_EXACT,
		"subset": apiv1.SelectorMatch_SELECTOR_MATCH_SUBSET, "any": apiv1.SelectorMatch_SELECTOR_MATCH_ANY,
	}[v]
	if !ok {
		return 0, fmt.Errorf("%s %q: want superset, exact, subset or any", name, v)
	}
	return m, nil
}

func entryShow(fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	entryID := fs.String("entryID", "", "the ID of the entry to show (not combined with other filters)")
	filter := entryFilterFlags(fs)
	output := outputFlag(fs)
	return func(ctx context.Context, c apiv1.AdminClient) error {
		if err := checkOutput(*output); err != nil {
			return err
		}
		req, err := filter()
		if err != nil {
			return err
		}
		if *entryID != "" {
			if !isEmptyFilter(req) {
				return errors.New("the -entryID flag can't be combined with others")
			}
			req.Id = *entryID
		}
		resp, err := c.ListEntries(ctx, req)
		if err != nil {
			return err
		}
		if *entryID != "" && len(resp.GetEntries()) == 0 {
			return fmt.Errorf("error fetching entry ID %s: %w", *entryID, status.Error(codes.NotFound, "no such registration entry"))
		}
		if *output == "json" {
			out := entryListJSON{Entries: make([]entryJSON, 0, len(resp.GetEntries()))}
			for _, e := range resp.GetEntries() {
				out.Entries = append(out.Entries, toEntryJSON(e))
			}
			return writeJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "Found %d entr%s\n", len(resp.GetEntries()), map[bool]string{true: "y", false: "ies"}[len(resp.GetEntries()) == 1])
		for _, e := range resp.GetEntries() {
			printEntry(stdout, e)
			fmt.Fprintln(stdout)
		}
		return nil
	}
}

// isEmptyFilter reports whether req filters on nothing (match modes alone
// filter nothing).
func isEmptyFilter(req *apiv1.ListEntriesRequest) bool {
	return req.GetSpiffeId() == "" && req.GetParentId() == "" && req.GetHint() == "" && req.Downstream == nil &&
		len(req.GetSelectors()) == 0 && len(req.GetFederatesWith()) == 0
}

func entryCount(fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	filter := entryFilterFlags(fs)
	output := outputFlag(fs)
	return func(ctx context.Context, c apiv1.AdminClient) error {
		if err := checkOutput(*output); err != nil {
			return err
		}
		req, err := filter()
		if err != nil {
			return err
		}
		resp, err := c.CountEntries(ctx, req)
		if err != nil {
			return err
		}
		if *output == "json" {
			return writeJSON(stdout, map[string]int32{"count": resp.GetCount()})
		}
		n := resp.GetCount()
		fmt.Fprintf(stdout, "%d registration entr%s\n", n, map[bool]string{true: "y", false: "ies"}[n == 1])
		return nil
	}
}

// entryDelete is SPIRE's `entry delete`: one -entryID, or a -file of
// {"ids": [...]}; each ID succeeds or fails alone.
func entryDelete(fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	id := fs.String("entryID", "", "the ID of the entry to delete")
	file := fs.String("file", "", `path to a JSON file of IDs to delete ({"ids": [...]}); - for stdin`)
	output := outputFlag(fs)
	return func(ctx context.Context, c apiv1.AdminClient) error {
		if err := checkOutput(*output); err != nil {
			return err
		}
		var ids []string
		switch {
		case *id != "" && *file != "":
			return errors.New("-entryID and -file are mutually exclusive")
		case *id != "":
			ids = []string{*id}
		case *file != "":
			raw, err := readDataFile(*file)
			if err != nil {
				return err
			}
			if ids, err = parseDeleteFile(raw, *file); err != nil {
				return err
			}
		default:
			return errors.New("-entryID or -file is required")
		}
		out := deleteResultsJSON{Results: make([]deleteResultJSON, 0, len(ids))}
		var failed int
		for _, id := range ids {
			_, err := c.DeleteEntry(ctx, &apiv1.DeleteEntryRequest{Id: id})
			st := statusJSON{Code: 0, Message: "OK"}
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				s := status.Convert(err)
				st = statusJSON{Code: int32(s.Code()), Message: s.Message()}
				failed++
			}
			out.Results = append(out.Results, deleteResultJSON{Status: st, ID: id})
		}
		if *output == "json" {
			if err := writeJSON(stdout, out); err != nil {
				return err
			}
		} else {
			for _, r := range out.Results {
				if r.Status.Code == 0 {
					fmt.Fprintf(stdout, "Deleted entry with ID: %s\n", r.ID)
				} else {
					fmt.Fprintf(stdout, "Failed to delete entry with ID %s (code: %s, msg: %q)\n", r.ID, codes.Code(r.Status.Code), r.Status.Message)
				}
			}
		}
		switch {
		case failed == 1 && len(ids) == 1:
			return fmt.Errorf("failed to delete entry: %s", out.Results[0].Status.Message)
		case failed > 0:
			return fmt.Errorf("failed to delete %d of %d entries", failed, len(ids))
		}
		return nil
	}
}

func printEntry(w io.Writer, e *apiv1.Entry) {
	id := e.GetId()
	if id == "" {
		id = "(none)"
	}
	fmt.Fprintf(w, "Entry ID         : %s\n", id)
	fmt.Fprintf(w, "SPIFFE ID        : %s\n", e.GetSpiffeId())
	fmt.Fprintf(w, "Parent ID        : %s\n", e.GetParentId())
	fmt.Fprintf(w, "Revision         : %d\n", e.GetRevision())
	fmt.Fprintf(w, "X509-SVID TTL    : %s\n", ttlString(e.GetX509SvidTtl()))
	fmt.Fprintf(w, "JWT-SVID TTL     : %s\n", ttlString(e.GetJwtSvidTtl()))
	sels := make([]string, 0, len(e.GetSelectors()))
	for _, s := range e.GetSelectors() {
		sels = append(sels, s.GetType()+":"+s.GetValue())
	}
	sort.Strings(sels)
	for _, s := range sels {
		fmt.Fprintf(w, "Selector         : %s\n", s)
	}
	for _, d := range e.GetDnsNames() {
		fmt.Fprintf(w, "DNS name         : %s\n", d)
	}
	for _, f := range e.GetFederatesWith() {
		fmt.Fprintf(w, "FederatesWith    : %s\n", f)
	}
	if e.GetAdmin() {
		fmt.Fprintf(w, "Admin            : true\n")
	}
	if e.GetDownstream() {
		fmt.Fprintf(w, "Downstream       : true\n")
	}
	if e.GetHint() != "" {
		fmt.Fprintf(w, "Hint             : %s\n", e.GetHint())
	}
}
