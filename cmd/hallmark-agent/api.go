package main

import (
	"context"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/hallmarkid/hallmark/agent"
)

func fetchX509(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("api fetch x509", flag.ContinueOnError)
	socketPath := fs.String("socketPath", defaultSocketPath(), "path to the Workload API socket")
	write := fs.String("write", "", "directory to write svid.N.pem, svid.N.key and bundle.N.pem into")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for an SVID")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	x509Ctx, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+*socketPath))
	if err != nil {
		return fmt.Errorf("fetch X.509 SVIDs: %w", err)
	}
	fmt.Fprintf(stdout, "Received %d svid%s after %s\n\n", len(x509Ctx.SVIDs), map[bool]string{true: "", false: "s"}[len(x509Ctx.SVIDs) == 1], time.Since(start).Round(time.Microsecond))
	for i, s := range x509Ctx.SVIDs {
		leaf := s.Certificates[0]
		fmt.Fprintf(stdout, "SPIFFE ID:\t\t%s\n", s.ID)
		fmt.Fprintf(stdout, "SVID Serial:\t\t%s\n", leaf.SerialNumber)
		fmt.Fprintf(stdout, "SVID Valid After:\t%s\n", leaf.NotBefore.UTC())
		fmt.Fprintf(stdout, "SVID Valid Until:\t%s\n", leaf.NotAfter.UTC())
		if s.Hint != "" {
			fmt.Fprintf(stdout, "Hint:\t\t\t%s\n", s.Hint)
		}
		if b, err := x509Ctx.Bundles.GetX509BundleForTrustDomain(s.ID.TrustDomain()); err == nil {
			for j, ca := range b.X509Authorities() {
				fmt.Fprintf(stdout, "CA #%d Valid After:\t%s\n", j+1, ca.NotBefore.UTC())
				fmt.Fprintf(stdout, "CA #%d Valid Until:\t%s\n", j+1, ca.NotAfter.UTC())
			}
		}
		fmt.Fprintln(stdout)
		if *write == "" {
			continue
		}
		certPEM, keyPEM, err := s.Marshal()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*write, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*write, fmt.Sprintf("svid.%d.pem", i)), certPEM, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*write, fmt.Sprintf("svid.%d.key", i)), keyPEM, 0o600); err != nil {
			return err
		}
		if b, err := x509Ctx.Bundles.GetX509BundleForTrustDomain(s.ID.TrustDomain()); err == nil {
			var out []byte
			for _, ca := range b.X509Authorities() {
				out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})...)
			}
			if err := os.WriteFile(filepath.Join(*write, fmt.Sprintf("bundle.%d.pem", i)), out, 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "Writing SVID #%d to file %s.\n", i, filepath.Join(*write, fmt.Sprintf("svid.%d.pem", i)))
		fmt.Fprintf(stdout, "Writing key #%d to file %s.\n", i, filepath.Join(*write, fmt.Sprintf("svid.%d.key", i)))
		fmt.Fprintf(stdout, "Writing bundle #%d to file %s.\n\n", i, filepath.Join(*write, fmt.Sprintf("bundle.%d.pem", i)))
	}
	return nil
}

func healthcheck(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	socketPath := fs.String("socketPath", defaultSocketPath(), "path to the Workload API socket")
	verbose := fs.Bool("verbose", false, "print details")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	conn, err := grpc.NewClient("unix://"+*socketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
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
