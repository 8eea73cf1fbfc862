package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/hallmarkid/hallmark/agent"
)

// socketAddr is the gRPC target of a Workload API socket path, made
// absolute so that a -socketPath relative to the working directory works.
func socketAddr(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return "unix://" + path
}

// fetchX509Response reads the first X509SVIDResponse the Workload API
// sends this process.
func fetchX509Response(ctx context.Context, socketPath string) (*workload.X509SVIDResponse, error) {
	conn, err := grpc.NewClient(socketAddr(socketPath), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		return nil, err
	}
	return stream.Recv()
}

// fetchedSVID is one SVID of an X509SVIDResponse, parsed and verified
// against its bundle.
type fetchedSVID struct {
	svid   *x509svid.SVID
	bundle []*x509.Certificate
}

// parseX509Response parses and verifies every SVID of resp, and returns
// the federated bundles by trust domain ID.
func parseX509Response(resp *workload.X509SVIDResponse) ([]fetchedSVID, map[string][]*x509.Certificate, error) {
	if len(resp.GetSvids()) == 0 {
		return nil, nil, errors.New("workload response contains no svids")
	}
	fed := make(map[string][]*x509.Certificate, len(resp.GetFederatedBundles()))
	for td, der := range resp.GetFederatedBundles() {
		certs, err := x509.ParseCertificates(der)
		if err != nil || len(certs) == 0 {
			return nil, nil, fmt.Errorf("bundle of federated domain %q: no certificates (%v)", td, err)
		}
		fed[td] = certs
	}
	out := make([]fetchedSVID, 0, len(resp.GetSvids()))
	for i, s := range resp.GetSvids() {
		svid, err := x509svid.ParseRaw(s.GetX509Svid(), s.GetX509SvidKey())
		if err != nil {
			return nil, nil, fmt.Errorf("svid %d (%q): %w", i, s.GetSpiffeId(), err)
		}
		svid.Hint = s.GetHint()
		bundle, err := x509.ParseCertificates(s.GetBundle())
		if err != nil || len(bundle) == 0 {
			return nil, nil, fmt.Errorf("svid %d (%q): no certificates in its bundle (%v)", i, s.GetSpiffeId(), err)
		}
		roots := x509.NewCertPool()
		for _, c := range bundle {
			roots.AddCert(c)
		}
		inter := x509.NewCertPool()
		for _, c := range svid.Certificates[1:] {
			inter.AddCert(c)
		}
		if _, err := svid.Certificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, nil, fmt.Errorf("svid %d (%q) failed verification against its bundle: %w", i, s.GetSpiffeId(), err)
		}
		out = append(out, fetchedSVID{svid: svid, bundle: bundle})
	}
	return out, fed, nil
}

// fetchX509 is `api fetch x509` (and bare `api fetch`): SPIRE's flags and
// output shapes; -output json prints the Workload API response as SPIRE
// does (protojson, proto names, unset fields emitted).
func fetchX509(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("api fetch x509", flag.ContinueOnError)
	socketPath := fs.String("socketPath", defaultSocketPath(), "path to the Workload API socket")
	write := fs.String("write", "", "directory to write svid.N.pem, svid.N.key, bundle.N.pem and federated_bundle.N.M.pem into (pretty output only)")
	silent := fs.Bool("silent", false, "suppress stdout (pretty output)")
	output := fs.String("output", "pretty", "output format: pretty or json")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for an SVID")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *output != "pretty" && *output != "json":
		return fmt.Errorf("-output %q: want pretty or json", *output)
	case *output == "json" && *write != "":
		return errors.New("-write is only available with -output pretty")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	resp, err := fetchX509Response(ctx, *socketPath)
	if err != nil {
		return fmt.Errorf("fetch X.509 SVIDs: %w", err)
	}
	took := time.Since(start)
	if *output == "json" {
		return writeProtoJSONs(stdout, resp)
	}
	svids, fed, err := parseX509Response(resp)
	if err != nil {
		return fmt.Errorf("fetch X.509 SVIDs: %w", err)
	}
	if *silent {
		stdout = io.Discard
	}
	printX509(stdout, svids, took)
	if *write != "" {
		return writeX509(stdout, *write, svids, fed)
	}
	return nil
}

func printX509(w io.Writer, svids []fetchedSVID, took time.Duration) {
	fmt.Fprintf(w, "Received %d svid%s after %s\n\n", len(svids), map[bool]string{true: "", false: "s"}[len(svids) == 1], took.Round(time.Microsecond))
	for _, s := range svids {
		leaf := s.svid.Certificates[0]
		fmt.Fprintf(w, "SPIFFE ID:\t\t%s\n", s.svid.ID)
		fmt.Fprintf(w, "SVID Serial:\t\t%s\n", leaf.SerialNumber)
		fmt.Fprintf(w, "SVID Valid After:\t%s\n", leaf.NotBefore.UTC())
		fmt.Fprintf(w, "SVID Valid Until:\t%s\n", leaf.NotAfter.UTC())
		if s.svid.Hint != "" {
			fmt.Fprintf(w, "Hint:\t\t\t%s\n", s.svid.Hint)
		}
		for j, ca := range s.bundle {
			fmt.Fprintf(w, "CA #%d Valid After:\t%s\n", j+1, ca.NotBefore.UTC())
			fmt.Fprintf(w, "CA #%d Valid Until:\t%s\n", j+1, ca.NotAfter.UTC())
		}
		fmt.Fprintln(w)
	}
}

// writeX509 writes SPIRE's files into dir: per SVID N svid.N.pem, svid.N.key
// (0600), bundle.N.pem and, per federated trust domain M (sorted by ID),
// federated_bundle.N.M.pem.
func writeX509(w io.Writer, dir string, svids []fetchedSVID, fed map[string][]*x509.Certificate) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tds := make([]string, 0, len(fed))
	for td := range fed {
		tds = append(tds, td)
	}
	sort.Strings(tds)
	for i, s := range svids {
		certPEM, keyPEM, err := s.svid.Marshal()
		if err != nil {
			return err
		}
		files := []struct {
			what string
			name string
			data []byte
			mode os.FileMode
		}{
			{fmt.Sprintf("SVID #%d", i), fmt.Sprintf("svid.%d.pem", i), certPEM, 0o644},
			{fmt.Sprintf("key #%d", i), fmt.Sprintf("svid.%d.key", i), keyPEM, 0o600},
			{fmt.Sprintf("bundle #%d", i), fmt.Sprintf("bundle.%d.pem", i), certsPEM(s.bundle), 0o644},
		}
		for j, td := range tds {
			files = append(files, struct {
				what string
				name string
				data []byte
				mode os.FileMode
			}{fmt.Sprintf("federated bundle #%d for trust domain %s", j, td), fmt.Sprintf("federated_bundle.%d.%d.pem", i, j), certsPEM(fed[td]), 0o644})
		}
		for _, f := range files {
			path := filepath.Join(dir, f.name)
			fmt.Fprintf(w, "Writing %s to file %s.\n", f.what, path)
			if err := writeFileMode(path, f.data, f.mode); err != nil {
				return err
			}
		}
		fmt.Fprintln(w)
	}
	return nil
}

// writeFileMode writes data to path with exactly mode, also when the file
// existed with a looser one.
func writeFileMode(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

func certsPEM(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// healthcheck is SPIRE's agent healthcheck: healthy when the agent holds
// a valid SVID and is neither evicted nor banned; with -shallow, when it
// answers at all.
func healthcheck(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	socketPath := fs.String("socketPath", defaultSocketPath(), "path to the Workload API socket")
	shallow := fs.Bool("shallow", false, "only check that the agent answers (liveness), not that it is ready")
	verbose := fs.Bool("verbose", false, "print details")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	conn, err := grpc.NewClient(socketAddr(*socketPath), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var trailer metadata.MD
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	if err != nil {
		return fmt.Errorf("agent is unhealthy: unable to reach the agent: %w", err)
	}
	if !*shallow && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		why := "no valid agent SVID"
		if d := trailer.Get(agent.HealthDetailTrailer); len(d) > 0 && d[0] != "" {
			why = d[0]
		}
		return fmt.Errorf("agent is unhealthy: %s: %s", resp.GetStatus(), why)
	}
	if *verbose {
		fmt.Fprintf(stdout, "Status: %s\n", resp.GetStatus())
	}
	fmt.Fprintln(stdout, "Agent is healthy.")
	return nil
}
