package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// localAuthorityCommand returns the run function of a localauthority
// command ("localauthority x509 show", "localauthority jwt revoke", ...),
// or nil for others.
func localAuthorityCommand(cmd string, fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	words := strings.Fields(cmd)
	if len(words) != 3 || words[0] != "localauthority" || (words[1] != "x509" && words[1] != "jwt") {
		return nil
	}
	kind, verb := words[1], words[2]
	label := map[string]string{"x509": "X.509 authority", "jwt": "JWT authority"}[kind]
	switch verb {
	case "show":
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			list := c.ListX509Authorities
			if kind == "jwt" {
				list = c.ListJWTAuthorities
			}
			resp, err := list(ctx, &apiv1.ListLocalAuthoritiesRequest{})
			if err != nil {
				return err
			}
			if *output == "json" {
				out, err := toAuthorityStates(resp)
				if err != nil {
					return err
				}
				return writeJSON(stdout, out)
			}
			printAuthorities(stdout, label, resp.GetAuthorities())
			return nil
		}
	case "prepare":
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			prepare := c.PrepareX509Authority
			if kind == "jwt" {
				prepare = c.PrepareJWTAuthority
			}
			a, err := prepare(ctx, &apiv1.PrepareLocalAuthorityRequest{})
			if err != nil {
				return err
			}
			if *output == "json" {
				return writeJSON(stdout, map[string]*authorityStateJSON{"prepared_authority": toAuthorityState(a)})
			}
			fmt.Fprintf(stdout, "Prepared %s:\n", label)
			printAuthority(stdout, a)
			return nil
		}
	case "activate", "taint", "revoke":
		id := fs.String("authorityID", "", "ID of the "+label+" (see `localauthority "+kind+" show`)")
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if *id == "" {
				return errors.New("-authorityID is required")
			}
			do := map[string]func(context.Context, *apiv1.LocalAuthorityRequest, ...grpc.CallOption) (*apiv1.LocalAuthority, error){
				"x509 activate": c.ActivateX509Authority, "x509 taint": c.TaintX509Authority, "x509 revoke": c.RevokeX509Authority,
				"jwt activate": c.ActivateJWTAuthority, "jwt taint": c.TaintJWTAuthority, "jwt revoke": c.RevokeJWTAuthority,
			}[kind+" "+verb]
			a, err := do(ctx, &apiv1.LocalAuthorityRequest{AuthorityId: *id})
			if err != nil {
				return err
			}
			if *output == "json" {
				key := map[string]string{"activate": "activated_authority", "taint": "tainted_authority", "revoke": "revoked_authority"}[verb]
				return writeJSON(stdout, map[string]*authorityStateJSON{key: toAuthorityState(a)})
			}
			past := map[string]string{"activate": "Activated", "taint": "Tainted", "revoke": "Revoked"}[verb]
			fmt.Fprintf(stdout, "%s %s:\n", past, label)
			printAuthority(stdout, a)
			return nil
		}
	}
	return nil
}

// printAuthorities prints the active, prepared and old authorities the way
// SPIRE's `localauthority ... show` does, with more detail per authority.
func printAuthorities(w io.Writer, label string, as []*apiv1.LocalAuthority) {
	for i, st := range []string{"active", "prepared", "old"} {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s %s:\n", strings.ToUpper(st[:1])+st[1:], label)
		n := 0
		for _, a := range as {
			if a.GetStatus() != st {
				continue
			}
			if n > 0 {
				fmt.Fprintln(w)
			}
			n++
			printAuthority(w, a)
		}
		if n == 0 {
			fmt.Fprintf(w, "  No %s %s found\n", st, label)
		}
	}
}

func printAuthority(w io.Writer, a *apiv1.LocalAuthority) {
	fmt.Fprintf(w, "  Authority ID     : %s\n", a.GetAuthorityId())
	fmt.Fprintf(w, "  Status           : %s\n", a.GetStatus())
	fmt.Fprintf(w, "  Tainted          : %t\n", a.GetTainted())
	if a.GetSubjectKeyId() != "" {
		fmt.Fprintf(w, "  Subject key ID   : %s\n", a.GetSubjectKeyId())
	}
	if a.GetIntermediate() {
		fmt.Fprintf(w, "  Intermediate     : true\n")
	}
	if a.GetAlgorithm() != "" {
		fmt.Fprintf(w, "  Algorithm        : %s\n", a.GetAlgorithm())
	}
	fmt.Fprintf(w, "  Expires at       : %s\n", unixTime(a.GetNotAfter()))
	fmt.Fprintf(w, "  Published at     : %s\n", unixTime(a.GetPublishedAt()))
	fmt.Fprintf(w, "  Activated at     : %s\n", unixTime(a.GetActivatedAt()))
}

func unixTime(s int64) string {
	if s == 0 {
		return "never"
	}
	return time.Unix(s, 0).UTC().Format(time.RFC3339)
}

// The JSON output follows SPIRE's localauthority API: the active,
// prepared and old authority (null when there is none; SPIRE keeps one
// old authority, so the most recently active one is shown), each with its
// ID, expiry (a string, as protojson writes 64-bit integers) and the
// upstream authority's subject key ID (empty: Hallmark does not record it).
// "authorities" adds every authority with Hallmark's detail (status,
// subject key ID, taint, times).
type (
	authorityStateJSON struct {
		AuthorityID                   string `json:"authority_id"`
		ExpiresAt                     string `json:"expires_at"`
		UpstreamAuthoritySubjectKeyID string `json:"upstream_authority_subject_key_id"`
	}
	authorityStatesJSON struct {
		Active   *authorityStateJSON `json:"active"`
		Prepared *authorityStateJSON `json:"prepared"`
		Old      *authorityStateJSON `json:"old"`
		// Authorities is Hallmark's full list (protojson of
		// apiv1.LocalAuthority, proto names).
		Authorities json.RawMessage `json:"authorities"`
	}
)

func toAuthorityState(a *apiv1.LocalAuthority) *authorityStateJSON {
	return &authorityStateJSON{AuthorityID: a.GetAuthorityId(), ExpiresAt: strconv.FormatInt(a.GetNotAfter(), 10)}
}

func toAuthorityStates(resp *apiv1.ListLocalAuthoritiesResponse) (authorityStatesJSON, error) {
	var out authorityStatesJSON
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(resp)
	if err != nil {
		return out, err
	}
	var full struct {
		Authorities json.RawMessage `json:"authorities"`
	}
	if err := json.Unmarshal(b, &full); err != nil {
		return out, err
	}
	out.Authorities = full.Authorities
	var oldAt int64
	for _, a := range resp.GetAuthorities() {
		switch a.GetStatus() {
		case "active":
			if out.Active == nil {
				out.Active = toAuthorityState(a)
			}
		case "prepared":
			if out.Prepared == nil {
				out.Prepared = toAuthorityState(a)
			}
		case "old":
			if out.Old == nil || a.GetActivatedAt() > oldAt {
				out.Old, oldAt = toAuthorityState(a), a.GetActivatedAt()
			}
		}
	}
	return out, nil
}
