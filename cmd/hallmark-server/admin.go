package main

import (
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/uds"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/config"
)

// defaultSocketPath is the admin socket of a server on the default
// socket_path: the root server's when its directory exists (only root can
// create it in /run), the non-root server's otherwise.
func defaultSocketPath() string {
	if _, err := os.Lstat(filepath.Dir(config.RootSocketPath)); err == nil {
		return config.RootSocketPath
	}
	return config.DefaultSocketPath
}

// dialAdmin connects to the admin socket after checking that nobody but
// root or this user could have put it there (uds.CheckDial): a socket
// another user planted would answer with their bundle and their tokens.
func dialAdmin(socketPath string) (apiv1.AdminClient, func(), error) {
	path, err := uds.CheckDial(socketPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("server admin socket %s: %w (is the server running? use -socketPath)", socketPath, err)
	case errors.Is(err, fs.ErrPermission):
		return nil, nil, fmt.Errorf("server admin socket %s: %w (run this command as root or as the user the server runs as)", socketPath, err)
	case err != nil:
		return nil, nil, err
	}
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20)))
	if err != nil {
		return nil, nil, err
	}
	return apiv1.NewAdminClient(conn), func() { conn.Close() }, nil
}

func admin(cmd string, args []string, stdout io.Writer) error {
	fs := newFlagSet(cmd)
	socketPath := fs.String("socketPath", defaultSocketPath(), "path to the server's admin socket")
	var run func(context.Context, apiv1.AdminClient) error
	switch cmd {
	case "entry create":
		run = entryCreate(fs, stdout)
	case "entry update":
		run = entryUpdate(fs, stdout)
	case "entry show":
		run = entryShow(fs, stdout)
	case "entry delete":
		id := fs.String("entryID", "", "ID of the entry to delete")
		run = func(ctx context.Context, c apiv1.AdminClient) error {
			if *id == "" {
				return errors.New("-entryID is required")
			}
			resp, err := c.DeleteEntry(ctx, &apiv1.DeleteEntryRequest{Id: *id})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Deleted entry with ID: %s\n\n", *id)
			printEntry(stdout, resp.GetEntry())
			return nil
		}
	case "token generate":
		spiffeID := fs.String("spiffeID", "", "additional SPIFFE ID to assign the token owner (optional)")
		ttl := fs.Int("ttl", 600, "token TTL in seconds")
		run = func(ctx context.Context, c apiv1.AdminClient) error {
			resp, err := c.GenerateJoinToken(ctx, &apiv1.GenerateJoinTokenRequest{TtlSeconds: int64(*ttl), SpiffeId: *spiffeID})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Token: %s\n", resp.GetToken())
			return nil
		}
	case "bundle show":
		format := fs.String("format", "pem", "output format: pem or spiffe")
		run = func(ctx context.Context, c apiv1.AdminClient) error {
			b, err := c.GetBundle(ctx, &apiv1.GetBundleRequest{})
			if err != nil {
				return err
			}
			return printBundle(stdout, b, *format)
		}
	case "healthcheck":
		shallow := fs.Bool("shallow", false, "only check that the server answers")
		verbose := fs.Bool("verbose", false, "print details")
		run = func(ctx context.Context, c apiv1.AdminClient) error {
			h, err := c.Health(ctx, &apiv1.HealthRequest{})
			if err != nil {
				return fmt.Errorf("server is unhealthy: unable to reach the server: %w", err)
			}
			if !*shallow && !h.GetReady() {
				return fmt.Errorf("server is unhealthy: %s", h.GetDetail())
			}
			if *verbose {
				fmt.Fprintf(stdout, "Detail: %s\n", h.GetDetail())
			}
			fmt.Fprintln(stdout, "Server is healthy.")
			return nil
		}
	default:
		if run = federationCommand(cmd, fs, stdout); run == nil {
			run = localAuthorityCommand(cmd, fs, stdout)
		}
		if run == nil {
			run = agentCommand(cmd, fs, stdout)
		}
		if run == nil {
			return fmt.Errorf("unknown command %q", cmd)
		}
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	client, closeFn, err := dialAdmin(*socketPath)
	if err != nil {
		return err
	}
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return run(ctx, client)
}

func entryCreate(fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	spiffeID := fs.String("spiffeID", "", "the SPIFFE ID of the workload")
	parentID := fs.String("parentID", "", "the SPIFFE ID of the parent (an agent, or a node entry's ID)")
	var selectors, dns, fedWith stringList
	fs.Var(&selectors, "selector", "a colon-delimited type:value selector; repeatable")
	fs.Var(&dns, "dns", "a DNS name for the SVID; repeatable")
	fs.Var(&fedWith, "federatesWith", "a trust domain ID to federate with; repeatable")
	x509TTL := fs.Int("x509SVIDTTL", 0, "X.509 SVID TTL in seconds (0: server default)")
	jwtTTL := fs.Int("jwtSVIDTTL", 0, "JWT SVID TTL in seconds (0: server default)")
	node := fs.Bool("node", false, "a node entry: parented by the server, matching agents by selector")
	admin := fs.Bool("admin", false, "an admin workload")
	downstream := fs.Bool("downstream", false, "a downstream CA")
	hint := fs.String("hint", "", "a hint for workloads that get several SVIDs")
	data := fs.String("data", "", "path to a JSON file of entries ({\"entries\": [...]}); - for stdin")
	output := fs.String("output", "pretty", "output format: pretty or json")
	return func(ctx context.Context, c apiv1.AdminClient) error {
		var entries []*apiv1.Entry
		if *data != "" {
			es, err := readEntriesFile(*data)
			if err != nil {
				return err
			}
			entries = es
		} else {
			if *spiffeID == "" {
				return errors.New("-spiffeID is required")
			}
			if len(selectors) == 0 {
				return errors.New("at least one -selector is required")
			}
			e := &apiv1.Entry{SpiffeId: *spiffeID, ParentId: *parentID, X509SvidTtl: int32(*x509TTL),
				JwtSvidTtl: int32(*jwtTTL), DnsNames: dns, FederatesWith: fedWith, Admin: *admin, Downstream: *downstream, Hint: *hint}
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
		if *output == "json" {
			return writeProtoJSON(stdout, resp)
		}
		var failed int
		for _, r := range resp.GetResults() {
			if r.GetError() != "" {
				failed++
			}
		}
		if len(resp.GetResults()) > 100 {
			fmt.Fprintf(stdout, "Created %d entries, %d failed\n", len(resp.GetResults())-failed, failed)
		} else {
			for _, r := range resp.GetResults() {
				if r.GetError() != "" {
					fmt.Fprintf(stdout, "FAILED to create the following entry:\n")
					printEntry(stdout, r.GetEntry())
					fmt.Fprintf(stdout, "Error             : %s\n\n", r.GetError())
					continue
				}
				printEntry(stdout, r.GetEntry())
				fmt.Fprintln(stdout)
			}
		}
		if failed > 0 {
			return fmt.Errorf("failed to create %d of %d entries", failed, len(resp.GetResults()))
		}
		return nil
	}
}

func entryShow(fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	spiffeID := fs.String("spiffeID", "", "show entries with this SPIFFE ID")
	parentID := fs.String("parentID", "", "show entries with this parent ID")
	entryID := fs.String("entryID", "", "show the entry with this ID")
	var selectors stringList
	fs.Var(&selectors, "selector", "show entries with exactly these selectors; repeatable")
	output := fs.String("output", "pretty", "output format: pretty or json")
	return func(ctx context.Context, c apiv1.AdminClient) error {
		req := &apiv1.ListEntriesRequest{SpiffeId: *spiffeID, ParentId: *parentID}
		for _, s := range selectors {
			sel, err := registration.ParseSelector(s)
			if err != nil {
				return err
			}
			req.Selectors = append(req.Selectors, &apiv1.Selector{Type: sel.Type, Value: sel.Value})
		}
		resp, err := c.ListEntries(ctx, req)
		if err != nil {
			return err
		}
		if *entryID != "" {
			var keep []*apiv1.Entry
			for _, e := range resp.GetEntries() {
				if e.GetId() == *entryID {
					keep = append(keep, e)
				}
			}
			resp.Entries = keep
		}
		if *output == "json" {
			return writeProtoJSON(stdout, resp)
		}
		fmt.Fprintf(stdout, "Found %d entr%s\n", len(resp.GetEntries()), map[bool]string{true: "y", false: "ies"}[len(resp.GetEntries()) == 1])
		for _, e := range resp.GetEntries() {
			printEntry(stdout, e)
			fmt.Fprintln(stdout)
		}
		return nil
	}
}

func printEntry(w io.Writer, e *apiv1.Entry) {
	if e.GetId() != "" {
		fmt.Fprintf(w, "Entry ID         : %s\n", e.GetId())
	}
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

func ttlString(s int32) string {
	if s == 0 {
		return "default"
	}
	return fmt.Sprint(s)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func printBundle(w io.Writer, b *apiv1.Bundle, format string) error {
	switch format {
	case "pem":
		for _, der := range b.GetX509Authorities() {
			if err := pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
				return err
			}
		}
		return nil
	case "spiffe":
		return writeSPIFFEBundle(w, b)
	default:
		return fmt.Errorf("unknown bundle format %q (pem or spiffe)", format)
	}
}
