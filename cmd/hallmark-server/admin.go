package main

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/uds"
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
	case "entry count":
		run = entryCount(fs, stdout)
	case "entry delete":
		run = entryDelete(fs, stdout)
	case "token generate":
		spiffeID := fs.String("spiffeID", "", "additional SPIFFE ID to assign the token owner (optional)")
		ttl := fs.Int("ttl", 600, "token TTL in seconds")
		output := outputFlag(fs)
		run = func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if *ttl < 0 || *ttl > maxTokenTTL {
				return fmt.Errorf("-ttl %d: want a number of seconds from 1 to %d (0: the server's default)", *ttl, maxTokenTTL)
			}
			resp, err := c.GenerateJoinToken(ctx, &apiv1.GenerateJoinTokenRequest{TtlSeconds: int64(*ttl), SpiffeId: *spiffeID})
			if err != nil {
				return err
			}
			if *output == "json" { // SPIRE's types.JoinToken
				return writeJSON(stdout, struct {
					Value     string `json:"value"`
					ExpiresAt string `json:"expires_at"`
				}{resp.GetToken(), strconv.FormatInt(resp.GetExpiresAt(), 10)})
			}
			fmt.Fprintf(stdout, "Token: %s\n", resp.GetToken())
			return nil
		}
	case "bundle show":
		format := fs.String("format", "pem", "output format: pem or spiffe")
		output := outputFlag(fs)
		run = func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			b, err := c.GetBundle(ctx, &apiv1.GetBundleRequest{})
			if err != nil {
				return err
			}
			if *output == "json" {
				out, err := ownBundleJSON(ctx, c, b)
				if err != nil {
					return err
				}
				return writeJSON(stdout, out)
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
			run = relationshipCommand(cmd, fs, stdout)
		}
		if run == nil {
			run = localAuthorityCommand(cmd, fs, stdout)
		}
		if run == nil {
			run = agentCommand(cmd, fs, stdout)
		}
		if run == nil {
			run = mintCommand(cmd, fs, stdout)
		}
		if run == nil {
			run = loggerCommand(cmd, fs, stdout)
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
	return plainStatus(run(ctx, client))
}

// plainStatus turns the server's gRPC status error into its message and
// code ("token TTL out of range (InvalidArgument)") instead of grpc-go's
// "rpc error: code = ... desc = ..."; other errors pass unchanged.
func plainStatus(err error) error {
	se, ok := err.(interface{ GRPCStatus() *status.Status })
	if !ok {
		return err
	}
	st := se.GRPCStatus()
	return fmt.Errorf("%s (%s)", st.Message(), st.Code())
}

// maxTokenTTL is the longest join token lifetime the server accepts, in
// seconds (a year).
const maxTokenTTL = 365 * 24 * 3600

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
