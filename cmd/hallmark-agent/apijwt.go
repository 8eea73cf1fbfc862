package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// audiences collects repeated or comma-separated -audience flags.
type audiences []string

func (a *audiences) String() string { return strings.Join(*a, ",") }
func (a *audiences) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*a = append(*a, s)
		}
	}
	return nil
}

// fetchJWT is `api fetch jwt`: the caller's JWT-SVIDs for an audience and
// the JWT bundles, in SPIRE's output shape.
func fetchJWT(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("api fetch jwt", flag.ContinueOnError)
	socketPath := fs.String("socketPath", defaultSocketPath(), "path to the Workload API socket")
	var aud audiences
	fs.Var(&aud, "audience", "audience of the token (repeatable or comma separated; required)")
	spiffeID := fs.String("spiffeID", "", "SPIFFE ID to fetch a token for (default: every identity of the caller)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait")
	output := fs.String("output", "pretty", "output format: pretty or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(aud) == 0 {
		return errors.New("-audience is required")
	}
	if *output != "pretty" && *output != "json" {
		return fmt.Errorf("-output %q: want pretty or json", *output)
	}
	if *output == "json" {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		return fetchJWTJSON(ctx, stdout, *socketPath, aud, *spiffeID)
	}
	params := jwtsvid.Params{Audience: aud[0], ExtraAudiences: aud[1:]}
	if *spiffeID != "" {
		id, err := spiffeid.FromString(*spiffeID)
		if err != nil {
			return fmt.Errorf("-spiffeID: %w", err)
		}
		params.Subject = id
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(socketAddr(*socketPath)))
	if err != nil {
		return err
	}
	defer client.Close()
	svids, err := client.FetchJWTSVIDs(ctx, params)
	if err != nil {
		return fmt.Errorf("fetch JWT-SVIDs: %w", err)
	}
	for _, s := range svids {
		fmt.Fprintf(stdout, "token(%s):\n\t%s\n", s.ID, s.Marshal())
	}
	bundles, err := client.FetchJWTBundles(ctx)
	if err != nil {
		return fmt.Errorf("fetch JWT bundles: %w", err)
	}
	for _, b := range bundles.Bundles() {
		doc, err := b.Marshal()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "bundle(%s):\n\t%s\n", b.TrustDomain().IDString(), doc)
	}
	return nil
}

// validateJWT is `api validate jwt`: the agent checks a token for an
// audience.
func validateJWT(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("api validate jwt", flag.ContinueOnError)
	socketPath := fs.String("socketPath", defaultSocketPath(), "path to the Workload API socket")
	audience := fs.String("audience", "", "audience the token must carry (required)")
	token := fs.String("svid", "", "the JWT-SVID to validate (required)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait")
	output := fs.String("output", "pretty", "output format: pretty or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *audience == "" || *token == "" {
		return errors.New("-audience and -svid are required")
	}
	if *output != "pretty" && *output != "json" {
		return fmt.Errorf("-output %q: want pretty or json", *output)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *output == "json" {
		return withWorkloadClient(ctx, *socketPath, func(ctx context.Context, c workload.SpiffeWorkloadAPIClient) error {
			resp, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: *audience, Svid: *token})
			if err != nil {
				return fmt.Errorf("SVID is not valid: %w", err)
			}
			return writeProtoJSONs(stdout, resp)
		})
	}
	s, err := workloadapi.ValidateJWTSVID(ctx, *token, *audience, workloadapi.WithAddr(socketAddr(*socketPath)))
	if err != nil {
		return fmt.Errorf("SVID is not valid: %w", err)
	}
	claims, err := json.MarshalIndent(s.Claims, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "SVID is valid.\nSPIFFE ID : %s\nClaims    : %s\n", s.ID, claims)
	return nil
}

// watch is `api watch`: prints every X.509 context the agent pushes, until
// interrupted (or -count updates).
func watch(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("api watch", flag.ContinueOnError)
	socketPath := fs.String("socketPath", defaultSocketPath(), "path to the Workload API socket")
	count := fs.Int("count", 0, "stop after this many updates (0: until interrupted)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start, n := time.Now(), 0
	err := workloadapi.WatchX509Context(ctx, x509Watcher{
		update: func(c *workloadapi.X509Context) {
			n++
			fmt.Fprintf(stdout, "Received %d svid%s after %s\n", len(c.SVIDs), map[bool]string{true: "", false: "s"}[len(c.SVIDs) == 1],
				time.Since(start).Round(time.Millisecond))
			for _, s := range c.SVIDs {
				leaf := s.Certificates[0]
				fmt.Fprintf(stdout, "SPIFFE ID:\t\t%s\nSVID Serial:\t\t%s\nSVID Valid Until:\t%s\n", s.ID, leaf.SerialNumber, leaf.NotAfter.UTC())
			}
			for _, b := range c.Bundles.Bundles() {
				fmt.Fprintf(stdout, "Bundle:\t\t\t%s (%d authorities)\n", b.TrustDomain().IDString(), len(b.X509Authorities()))
			}
			fmt.Fprintln(stdout)
			start = time.Now()
			if *count > 0 && n >= *count {
				cancel()
			}
		},
		fail: func(err error) {
			if ctx.Err() == nil {
				fmt.Fprintf(stdout, "Watch error: %v\n", err)
			}
		},
	}, workloadapi.WithAddr(socketAddr(*socketPath)))
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

type x509Watcher struct {
	update func(*workloadapi.X509Context)
	fail   func(error)
}

func (w x509Watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w.update(c) }
func (w x509Watcher) OnX509ContextWatchError(err error)              { w.fail(err) }

// withWorkloadClient calls f with a raw Workload API client (the security
// header set), for the -output json forms that print its responses as
// SPIRE does.
func withWorkloadClient(ctx context.Context, socketPath string, f func(context.Context, workload.SpiffeWorkloadAPIClient) error) error {
	conn, err := grpc.NewClient(socketAddr(socketPath), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	return f(metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true"), workload.NewSpiffeWorkloadAPIClient(conn))
}

// fetchJWTJSON prints SPIRE's `api fetch jwt -output json`: the
// JWTSVIDResponse and the first JWTBundlesResponse, as a JSON array.
func fetchJWTJSON(ctx context.Context, w io.Writer, socketPath string, aud []string, spiffeID string) error {
	return withWorkloadClient(ctx, socketPath, func(ctx context.Context, c workload.SpiffeWorkloadAPIClient) error {
		svids, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: aud, SpiffeId: spiffeID})
		if err != nil {
			return fmt.Errorf("fetch JWT-SVIDs: %w", err)
		}
		stream, err := c.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
		if err != nil {
			return fmt.Errorf("fetch JWT bundles: %w", err)
		}
		bundles, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("fetch JWT bundles: %w", err)
		}
		return writeProtoJSONs(w, svids, bundles)
	})
}

// writeProtoJSONs prints one message, or several as an array, as protojson
// with proto names and unset fields emitted (SPIRE's -output json).
func writeProtoJSONs(w io.Writer, msgs ...proto.Message) error {
	raw := make([]json.RawMessage, len(msgs))
	for i, m := range msgs {
		b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
		if err != nil {
			return err
		}
		raw[i] = b
	}
	var v any = raw
	if len(raw) == 1 {
		v = raw[0]
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
