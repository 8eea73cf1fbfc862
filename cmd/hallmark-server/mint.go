package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// mintCommand returns the run function of SPIRE's `x509 mint` and `jwt
// mint`, or nil for other commands.
func mintCommand(cmd string, fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	switch cmd {
	case "x509 mint":
		spiffeID := fs.String("spiffeID", "", "SPIFFE ID of the X509-SVID")
		ttl := fs.Duration("ttl", 0, "TTL of the X509-SVID (0: the server's default_x509_svid_ttl)")
		var dns stringList
		fs.Var(&dns, "dns", "DNS name to include in the SVID; repeatable")
		write := fs.String("write", "", "directory to write svid.pem, key.pem (0600) and bundle.pem into instead of stdout")
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			id, err := mintID(*spiffeID)
			if err != nil {
				return err
			}
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
			if err != nil {
				return err
			}
			resp, err := c.MintX509SVID(ctx, &apiv1.MintX509SVIDRequest{Csr: csr, SpiffeId: id.String(), DnsNames: dns, TtlSeconds: ttlSeconds(*ttl)})
			if err != nil {
				return fmt.Errorf("unable to mint SVID: %w", err)
			}
			b, err := c.GetBundle(ctx, &apiv1.GetBundleRequest{})
			if err != nil {
				return fmt.Errorf("unable to get bundle: %w", err)
			}
			keyDER, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				return err
			}
			svidPEM, keyPEM, bundlePEM := pemChain(resp.GetCertChain()), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), pemChain(b.GetX509Authorities())
			switch {
			case *write != "":
				for _, f := range []struct {
					what, name string
					data       []byte
					mode       os.FileMode
				}{{"X509-SVID", "svid.pem", svidPEM, 0o644}, {"Private key", "key.pem", keyPEM, 0o600}, {"Root CAs", "bundle.pem", bundlePEM, 0o644}} {
					path := filepath.Join(*write, f.name)
					if err := os.WriteFile(path, f.data, f.mode); err != nil {
						return fmt.Errorf("unable to write %s: %w", f.what, err)
					}
					if err := os.Chmod(path, f.mode); err != nil {
						return err
					}
					fmt.Fprintf(stdout, "%s written to %s\n", f.what, path)
				}
				return nil
			case *output == "json":
				return writeJSON(stdout, struct {
					X509SVID   [][]byte `json:"x509_svid"`
					PrivateKey []byte   `json:"private_key"`
					RootCAs    [][]byte `json:"root_cas"`
				}{resp.GetCertChain(), keyDER, b.GetX509Authorities()})
			}
			fmt.Fprintf(stdout, "X509-SVID:\n%s\nPrivate key:\n%s\nRoot CAs:\n%s\n", svidPEM, keyPEM, bundlePEM)
			return nil
		}
	case "jwt mint":
		spiffeID := fs.String("spiffeID", "", "SPIFFE ID of the JWT-SVID")
		ttl := fs.Duration("ttl", 0, "TTL of the JWT-SVID (0: the server's default_jwt_svid_ttl)")
		var aud stringList
		fs.Var(&aud, "audience", "audience claim; repeatable")
		write := fs.String("write", "", "file to write the token to (0600) instead of stdout")
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			id, err := mintID(*spiffeID)
			if err != nil {
				return err
			}
			if len(aud) == 0 {
				return errors.New("at least one audience must be specified")
			}
			resp, err := c.MintJWTSVID(ctx, &apiv1.MintJWTSVIDRequest{SpiffeId: id.String(), Audience: aud, TtlSeconds: ttlSeconds(*ttl)})
			if err != nil {
				return fmt.Errorf("unable to mint SVID: %w", err)
			}
			switch {
			case *write != "":
				if err := os.WriteFile(*write, []byte(resp.GetToken()), 0o600); err != nil {
					return fmt.Errorf("unable to write token: %w", err)
				}
				if err := os.Chmod(*write, 0o600); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "JWT-SVID written to %s\n", *write)
				return nil
			case *output == "json":
				type svid struct {
					Token     string `json:"token"`
					ID        idJSON `json:"id"`
					ExpiresAt string `json:"expires_at"`
					IssuedAt  string `json:"issued_at"`
				}
				return writeJSON(stdout, map[string]svid{"svid": {Token: resp.GetToken(), ID: toIDJSON(id.String()),
					ExpiresAt: strconv.FormatInt(resp.GetExpiresAt(), 10), IssuedAt: strconv.FormatInt(resp.GetIssuedAt(), 10)}})
			}
			fmt.Fprintln(stdout, resp.GetToken())
			return nil
		}
	}
	return nil
}

func mintID(s string) (spiffeid.ID, error) {
	if s == "" {
		return spiffeid.ID{}, errors.New("spiffeID must be specified")
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("-spiffeID %q: %w", s, err)
	}
	return id, nil
}

// ttlSeconds rounds a TTL up to whole seconds, as SPIRE does.
func ttlSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

func pemChain(ders [][]byte) []byte {
	var out []byte
	for _, der := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}
