package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/server/federation"
)

// federationCommand returns the run function of a federation command
// (bundle list/set/delete, federation list/refresh), or nil for others.
func federationCommand(cmd string, fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	switch cmd {
	case "bundle count":
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			// SPIRE counts every bundle it holds: its own and the
			// federated ones.
			resp, err := c.ListFederatedBundles(ctx, &apiv1.ListFederatedBundlesRequest{})
			if err != nil {
				return err
			}
			n := len(resp.GetBundles()) + 1
			if *output == "json" {
				return writeJSON(stdout, map[string]int{"count": n})
			}
			fmt.Fprintf(stdout, "%d bundle%s\n", n, plural(n))
			return nil
		}
	case "bundle list":
		id := fs.String("id", "", "trust domain of the federated bundle to show (default: all)")
		format := fs.String("format", "pem", "output format: pem or spiffe")
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if *format != "pem" && *format != "spiffe" {
				return fmt.Errorf("unknown bundle format %q (pem or spiffe)", *format)
			}
			if err := checkOutput(*output); err != nil {
				return err
			}
			resp, err := c.ListFederatedBundles(ctx, &apiv1.ListFederatedBundlesRequest{TrustDomain: *id})
			if err != nil {
				return err
			}
			if *output == "json" {
				out := bundleListJSON{Bundles: make([]bundleJSON, 0, len(resp.GetBundles()))}
				for _, b := range resp.GetBundles() {
					j, err := federatedBundleJSON(b)
					if err != nil {
						return fmt.Errorf("bundle of %s: %w", b.GetTrustDomain(), err)
					}
					out.Bundles = append(out.Bundles, j)
				}
				return writeJSON(stdout, out)
			}
			for i, b := range resp.GetBundles() {
				if *id == "" {
					if i > 0 {
						fmt.Fprintln(stdout)
					}
					fmt.Fprintf(stdout, "****************************************\n* %s\n****************************************\n", b.GetTrustDomain())
				}
				if err := printFederatedBundle(stdout, b, *format); err != nil {
					return err
				}
			}
			return nil
		}
	case "bundle set":
		id := fs.String("id", "", "trust domain of the bundle (e.g. spiffe://other.org); not our own")
		path := fs.String("path", "-", "file holding the bundle; - for stdin")
		format := fs.String("format", "pem", "input format: pem or spiffe")
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if *id == "" {
				return errors.New("-id is required")
			}
			td, err := spiffeid.TrustDomainFromString(*id)
			if err != nil {
				return fmt.Errorf("-id %q: %w", *id, err)
			}
			doc, err := readBundleInput(td, *path, *format)
			if err != nil {
				return err
			}
			resp, err := c.SetFederatedBundle(ctx, &apiv1.SetFederatedBundleRequest{
				Bundle: &apiv1.BundleDocument{TrustDomain: td.Name(), Document: doc}})
			if err != nil && ctx.Err() != nil {
				return err
			}
			if *output == "json" { // SPIRE's BatchSetFederatedBundleResponse
				res := bundleSetResultJSON{Status: statusOf(err)}
				if err == nil {
					b, jerr := federatedBundleJSON(&apiv1.BundleDocument{TrustDomain: td.Name(), Document: doc})
					if jerr != nil {
						return jerr
					}
					res.Bundle = &b
				}
				if werr := writeJSON(stdout, bundleSetJSON{Results: []bundleSetResultJSON{res}}); werr != nil {
					return werr
				}
			}
			if err != nil {
				return fmt.Errorf("failed to set federated bundle: %w", err)
			}
			if *output == "json" {
				return nil
			}
			kind := "federates_with relationship, replacing its bundle until the next refresh"
			if resp.GetRelationship().GetStatic() {
				kind = "static bundle"
			}
			fmt.Fprintf(stdout, "Bundle of %s set (%s).\n", td.Name(), kind)
			return nil
		}
	case "bundle delete":
		id := fs.String("id", "", "trust domain whose static bundle to delete")
		mode := fs.String("mode", "restrict", "what to do with entries that federate with it: restrict (refuse), dissociate (remove it from them) or delete (delete them)")
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if *id == "" {
				return errors.New("-id is required")
			}
			switch *mode {
			case "restrict", "dissociate", "delete":
			default:
				return fmt.Errorf("-mode %q: want restrict, dissociate or delete", *mode)
			}
			resp, err := c.DeleteFederatedBundle(ctx, &apiv1.DeleteFederatedBundleRequest{TrustDomain: *id, Mode: *mode})
			if *output == "json" { // SPIRE's BatchDeleteFederatedBundleResponse
				if err != nil && ctx.Err() != nil {
					return err
				}
				st := status.Convert(err)
				msg := "OK"
				if err != nil {
					msg = st.Message()
				}
				if werr := writeJSON(stdout, bundleDeleteJSON{Results: []bundleDeleteResultJSON{
					{Status: statusJSON{Code: int32(st.Code()), Message: msg}, TrustDomain: *id}}}); werr != nil {
					return werr
				}
			}
			if err != nil {
				return fmt.Errorf("failed to delete federated bundle %q: %w", *id, err)
			}
			if *output != "json" {
				fmt.Fprintln(stdout, "Bundle deleted.")
				if n := resp.GetEntriesChanged(); n > 0 {
					fmt.Fprintf(stdout, "%d entr%s %s.\n", n, map[bool]string{true: "y", false: "ies"}[n == 1],
						map[string]string{"dissociate": "no longer federate with it", "delete": "deleted"}[*mode])
				}
			}
			return nil
		}
	case "federation refresh":
		id := fs.String("id", "", "trust domain whose bundle to fetch now")
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if *id == "" {
				return errors.New("-id is required")
			}
			r, err := c.RefreshFederatedBundle(ctx, &apiv1.RefreshFederatedBundleRequest{TrustDomain: *id})
			if err != nil {
				return err
			}
			if *output == "json" { // SPIRE prints the OK status
				return writeJSON(stdout, statusOf(nil))
			}
			fmt.Fprintf(stdout, "Bundle refreshed.\n\n")
			printRelationship(stdout, r)
			return nil
		}
	}
	return nil
}

func printFederatedBundle(w io.Writer, b *apiv1.BundleDocument, format string) error {
	if format == "spiffe" {
		_, err := fmt.Fprintf(w, "%s\n", b.GetDocument())
		return err
	}
	td, err := spiffeid.TrustDomainFromString(b.GetTrustDomain())
	if err != nil {
		return err
	}
	sb, err := spiffebundle.Parse(td, b.GetDocument())
	if err != nil {
		return fmt.Errorf("bundle of %s: %w", td.Name(), err)
	}
	for _, c := range sb.X509Authorities() {
		if err := pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			return err
		}
	}
	return nil
}

// readBundleInput reads a bundle of td from path (- for stdin) and returns
// it as a SPIFFE bundle document. The server checks it again.
func readBundleInput(td spiffeid.TrustDomain, path, format string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, federation.MaxBundleSize+1))
	if err != nil {
		return nil, err
	}
	return parseBundleInput(td, data, path, format)
}

// parseBundleInput parses data (from name) as a bundle of td in format and
// returns it as a SPIFFE bundle document.
func parseBundleInput(td spiffeid.TrustDomain, data []byte, path, format string) ([]byte, error) {
	if len(data) > federation.MaxBundleSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, federation.MaxBundleSize)
	}
	switch format {
	case "spiffe":
		if _, err := federation.ParseBundle(td, data); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return data, nil
	case "pem":
		var certs []*x509.Certificate
		rest := bytes.TrimSpace(data)
		for len(rest) > 0 {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				return nil, fmt.Errorf("%s: not PEM (use -format spiffe for a SPIFFE bundle)", path)
			}
			if blk.Type != "CERTIFICATE" {
				return nil, fmt.Errorf("%s: unexpected PEM block %q", path, blk.Type)
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			certs = append(certs, c)
			rest = bytes.TrimSpace(rest)
		}
		if len(certs) == 0 {
			return nil, fmt.Errorf("%s: no PEM certificates", path)
		}
		return federation.MarshalBundle(spiffebundle.FromX509Authorities(td, certs))
	default:
		return nil, fmt.Errorf("unknown bundle format %q (pem or spiffe)", format)
	}
}

func printRelationship(w io.Writer, r *apiv1.FederationRelationship) {
	fmt.Fprintf(w, "Trust domain      : %s\n", r.GetTrustDomain())
	switch {
	case r.GetStatic():
		fmt.Fprintf(w, "Bundle source     : static (bundle set)\n")
	default:
		fmt.Fprintf(w, "Bundle endpoint   : %s\n", r.GetBundleEndpointUrl())
		fmt.Fprintf(w, "Endpoint profile  : %s\n", r.GetBundleEndpointProfile())
		if r.GetEndpointSpiffeId() != "" {
			fmt.Fprintf(w, "Endpoint SPIFFE ID: %s\n", r.GetEndpointSpiffeId())
		}
		fmt.Fprintf(w, "Defined by        : %s\n", map[bool]string{true: "federation create (dynamic)", false: "configuration file (read-only)"}[r.GetDynamic()])
	}
	switch {
	case !r.GetHasBundle():
		fmt.Fprintf(w, "Bundle            : none yet\n")
	case r.GetRevoked():
		fmt.Fprintf(w, "Bundle            : REVOKED (empty)\n")
	default:
		fmt.Fprintf(w, "Bundle            : %d X.509 authorit%s\n", r.GetX509Authorities(),
			map[bool]string{true: "y", false: "ies"}[r.GetX509Authorities() == 1])
	}
	if r.GetHasSequence() {
		fmt.Fprintf(w, "Sequence          : %d\n", r.GetSequence())
	}
	if !r.GetStatic() {
		fmt.Fprintf(w, "Last refresh      : %s\n", unixString(r.GetLastAttempt()))
		fmt.Fprintf(w, "Last success      : %s\n", unixString(r.GetLastSuccess()))
		if r.GetLastError() != "" {
			fmt.Fprintf(w, "Last error        : %s\n", r.GetLastError())
		}
		fmt.Fprintf(w, "Refresh interval  : %s\n", time.Duration(r.GetRefreshIntervalSeconds())*time.Second)
		if r.GetNextRefresh() != 0 {
			fmt.Fprintf(w, "Next refresh      : %s\n", unixString(r.GetNextRefresh()))
		}
	} else if r.GetLastSuccess() != 0 {
		fmt.Fprintf(w, "Set at            : %s\n", unixString(r.GetLastSuccess()))
	}
}

func unixString(s int64) string {
	if s == 0 {
		return "never"
	}
	return time.Unix(s, 0).UTC().Format(time.RFC3339)
}
