package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
)

// agentCommand returns the run function of an agent command (SPIRE's
// verbs and flags: list, count, show, evict, ban, purge), or nil for
// others.
func agentCommand(cmd string, fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	switch cmd {
	case "agent list", "agent count":
		filter := agentFilterFlags(fs)
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			f, err := filter()
			if err != nil {
				return err
			}
			if err := checkOutput(*output); err != nil {
				return err
			}
			if cmd == "agent count" {
				resp, err := c.CountAgents(ctx, &apiv1.CountAgentsRequest{Filter: f})
				if err != nil {
					return err
				}
				if *output == "json" {
					return writeJSON(stdout, map[string]int32{"count": resp.GetCount()})
				}
				fmt.Fprintf(stdout, "%d attested agent%s\n", resp.GetCount(), plural(int(resp.GetCount())))
				return nil
			}
			resp, err := c.ListAgents(ctx, &apiv1.ListAgentsRequest{Filter: f})
			if err != nil {
				return err
			}
			if *output == "json" {
				out := agentListJSON{Agents: make([]agentJSON, 0, len(resp.GetAgents()))}
				for _, a := range resp.GetAgents() {
					out.Agents = append(out.Agents, toAgentJSON(a))
				}
				return writeJSON(stdout, out)
			}
			fmt.Fprintf(stdout, "Found %d attested agent%s:\n\n", len(resp.GetAgents()), plural(len(resp.GetAgents())))
			for _, a := range resp.GetAgents() {
				printAgent(stdout, a)
				fmt.Fprintln(stdout)
			}
			return nil
		}
	case "agent show", "agent evict", "agent ban":
		verb := cmd[len("agent "):]
		id := fs.String("spiffeID", "", "the SPIFFE ID of the agent to "+verb+" (agent identity)")
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if *id == "" {
				return errors.New("-spiffeID is required")
			}
			if _, err := spiffeid.FromString(*id); err != nil {
				return fmt.Errorf("-spiffeID %q: %w", *id, err)
			}
			if err := checkOutput(*output); err != nil {
				return err
			}
			var err error
			switch verb {
			case "show":
				var a *apiv1.Agent
				if a, err = c.GetAgent(ctx, &apiv1.GetAgentRequest{SpiffeId: *id}); err != nil {
					return err
				}
				if *output == "json" {
					return writeJSON(stdout, toAgentJSON(a))
				}
				fmt.Fprintf(stdout, "Found an attested agent given its SPIFFE ID\n\n")
				printAgent(stdout, a)
				return nil
			case "evict":
				_, err = c.EvictAgent(ctx, &apiv1.EvictAgentRequest{SpiffeId: *id})
			default:
				_, err = c.BanAgent(ctx, &apiv1.BanAgentRequest{SpiffeId: *id})
			}
			if err != nil {
				return err
			}
			if *output == "json" {
				return writeJSON(stdout, struct{}{})
			}
			if verb == "evict" {
				fmt.Fprintln(stdout, "Agent evicted successfully")
			} else {
				fmt.Fprintln(stdout, "Agent banned successfully")
			}
			return nil
		}
	case "agent purge":
		expiredFor := fs.Duration("expiredFor", 24*time.Hour, "how long ago an agent's SVID must have expired for it to be purged")
		dryRun := fs.Bool("dryRun", false, "only print the agents that would be purged")
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if *expiredFor < time.Second {
				return fmt.Errorf("-expiredFor %s: want at least 1s", *expiredFor)
			}
			if err := checkOutput(*output); err != nil {
				return err
			}
			resp, err := c.PurgeAgents(ctx, &apiv1.PurgeAgentsRequest{ExpiredForSeconds: int64(*expiredFor / time.Second), DryRun: *dryRun})
			if err != nil {
				return err
			}
			if *output == "json" {
				out := purgeJSON{Agents: make([]purgedJSON, 0, len(resp.GetAgents()))}
				for _, a := range resp.GetAgents() {
					out.Agents = append(out.Agents, purgedJSON{AgentID: a.GetAgentId(), Deleted: a.GetDeleted(), Error: a.GetError()})
				}
				return writeJSON(stdout, out)
			}
			printPurge(stdout, resp, *dryRun)
			return nil
		}
	}
	return nil
}

// agentFilterFlags defines SPIRE's agent list/count filter flags and
// returns a function building the filter once they are parsed.
func agentFilterFlags(fs *flag.FlagSet) func() (*apiv1.AgentFilter, error) {
	attestationType := fs.String("attestationType", "", "only agents attested with this attestor, like join_token or tpm")
	banned := fs.String("banned", "", "true: only banned agents; false: only agents that are not banned")
	canReattest := fs.String("canReattest", "", "true: only agents that can re-attest; false: only those that cannot")
	expiresBefore := fs.String("expiresBefore", "", `only agents whose SVID expires before this time ("2006-01-02 15:04:05 -0700 -07", RFC 3339 or 2006-01-02)`)
	matchOn := fs.String("matchSelectorsOn", "superset", "how -selector matches: superset, exact, subset or any")
	var selectors stringList
	fs.Var(&selectors, "selector", "a colon-delimited type:value selector; repeatable")
	return func() (*apiv1.AgentFilter, error) {
		f := &apiv1.AgentFilter{ByAttestationType: *attestationType}
		var err error
		if f.ByBanned, err = optionalBool("-banned", *banned); err != nil {
			return nil, err
		}
		if f.ByCanReattest, err = optionalBool("-canReattest", *canReattest); err != nil {
			return nil, err
		}
		if *expiresBefore != "" {
			t, err := parseExpiresBefore(*expiresBefore)
			if err != nil {
				return nil, err
			}
			f.ByExpiresBefore = t.Unix()
		}
		match, ok := map[string]apiv1.SelectorMatch{
			"superset": apiv1.SelectorMatch_SELECTOR_MATCH_SUPERSET, "exact": apiv1.SelectorMatch_SELECTOR_MATCH_EXACT,
			"subset": apiv1.SelectorMatch_SELECTOR_MATCH_SUBSET, "any": apiv1.SelectorMatch_SELECTOR_MATCH_ANY,
		}[*matchOn]
		if !ok {
			return nil, fmt.Errorf("-matchSelectorsOn %q: want superset, exact, subset or any", *matchOn)
		}
		f.SelectorMatch = match
		for _, s := range selectors {
			sel, err := registration.ParseSelector(s)
			if err != nil {
				return nil, err
			}
			f.BySelectors = append(f.BySelectors, &apiv1.Selector{Type: sel.Type, Value: sel.Value})
		}
		return f, nil
	}
}

// optionalBool parses a true/false filter flag; empty means no filter.
func optionalBool(name, v string) (*bool, error) {
	if v == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, fmt.Errorf("%s %q: want true or false", name, v)
	}
	return &b, nil
}

// parseExpiresBefore accepts SPIRE's layout, RFC 3339 and a bare date (UTC).
func parseExpiresBefore(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04:05 -0700 -07", time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf(`-expiresBefore %q: want "2006-01-02 15:04:05 -0700 -07", RFC 3339 or 2006-01-02`, s)
}

func outputFlag(fs *flag.FlagSet) *string {
	return fs.String("output", "pretty", "output format: pretty or json")
}

func checkOutput(o string) error {
	if o != "pretty" && o != "json" {
		return fmt.Errorf("-output %q: want pretty or json", o)
	}
	return nil
}

func printAgent(w io.Writer, a *apiv1.Agent) {
	fmt.Fprintf(w, "SPIFFE ID         : %s\n", a.GetSpiffeId())
	fmt.Fprintf(w, "Attestation type  : %s\n", a.GetAttestationType())
	if a.GetX509SvidExpiresAt() != 0 {
		fmt.Fprintf(w, "Expiration time   : %s\n", time.Unix(a.GetX509SvidExpiresAt(), 0).UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "Serial number     : %s\n", a.GetX509SvidSerialNumber())
	fmt.Fprintf(w, "Can re-attest     : %t\n", a.GetCanReattest())
	fmt.Fprintf(w, "Banned            : %t\n", a.GetBanned())
	for _, s := range a.GetSelectors() {
		fmt.Fprintf(w, "Selector          : %s:%s\n", s.GetType(), s.GetValue())
	}
}

func printPurge(w io.Writer, resp *apiv1.PurgeAgentsResponse, dryRun bool) {
	agents := resp.GetAgents()
	if len(agents) == 0 {
		fmt.Fprintln(w, "No agents to purge.")
		return
	}
	fmt.Fprintf(w, "Found %d expired agent%s\n\n", len(agents), plural(len(agents)))
	if dryRun {
		fmt.Fprintln(w, "Agents that can be purged:")
		for _, a := range agents {
			fmt.Fprintf(w, "SPIFFE ID         : %s\n", a.GetAgentId())
		}
		return
	}
	var purged, kept []*apiv1.PurgedAgent
	for _, a := range agents {
		if a.GetDeleted() {
			purged = append(purged, a)
		} else {
			kept = append(kept, a)
		}
	}
	if len(purged) > 0 {
		fmt.Fprintln(w, "Agents purged:")
		for _, a := range purged {
			fmt.Fprintf(w, "SPIFFE ID         : %s\n", a.GetAgentId())
		}
	}
	if len(kept) > 0 {
		fmt.Fprintln(w, "Agents not purged:")
		for _, a := range kept {
			fmt.Fprintf(w, "SPIFFE ID         : %s\n", a.GetAgentId())
			fmt.Fprintf(w, "Error             : %s\n", a.GetError())
		}
	}
}

// The JSON output follows SPIRE's (protojson of its types.Agent): IDs as
// {trust_domain, path}, 64-bit integers as strings.
type (
	idJSON struct {
		TrustDomain string `json:"trust_domain"`
		Path        string `json:"path"`
	}
	selectorJSON struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	}
	agentJSON struct {
		ID                   idJSON         `json:"id"`
		AttestationType      string         `json:"attestation_type"`
		X509SVIDSerialNumber string         `json:"x509svid_serial_number"`
		X509SVIDExpiresAt    string         `json:"x509svid_expires_at"`
		Selectors            []selectorJSON `json:"selectors"`
		Banned               bool           `json:"banned"`
		CanReattest          bool           `json:"can_reattest"`
	}
	agentListJSON struct {
		Agents        []agentJSON `json:"agents"`
		NextPageToken string      `json:"next_page_token"`
	}
	purgedJSON struct {
		AgentID string `json:"agent_id"`
		Deleted bool   `json:"deleted"`
		Error   string `json:"error,omitempty"`
	}
	purgeJSON struct {
		Agents []purgedJSON `json:"expired_agents"`
	}
)

func toAgentJSON(a *apiv1.Agent) agentJSON {
	out := agentJSON{
		AttestationType: a.GetAttestationType(), X509SVIDSerialNumber: a.GetX509SvidSerialNumber(),
		X509SVIDExpiresAt: strconv.FormatInt(a.GetX509SvidExpiresAt(), 10), Banned: a.GetBanned(),
		CanReattest: a.GetCanReattest(), Selectors: make([]selectorJSON, 0, len(a.GetSelectors())),
	}
	if id, err := spiffeid.FromString(a.GetSpiffeId()); err == nil {
		out.ID = idJSON{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
	}
	for _, s := range a.GetSelectors() {
		out.Selectors = append(out.Selectors, selectorJSON{Type: s.GetType(), Value: s.GetValue()})
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
