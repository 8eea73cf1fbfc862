package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"

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
		output := fs.String("output", "pretty", "output format: pretty or json")
		return func(ctx context.Context, c apiv1.AdminClient) error {
			list := c.ListX509Authorities
			if kind == "jwt" {
				list = c.ListJWTAuthorities
			}
			resp, err := list(ctx, &apiv1.ListLocalAuthoritiesRequest{})
			if err != nil {
				return err
			}
			if *output == "json" {
				return writeProtoJSON(stdout, resp)
			}
			printAuthorities(stdout, label, resp.GetAuthorities())
			return nil
		}
	case "prepare":
		output := fs.String("output", "pretty", "output format: pretty or json")
		return func(ctx context.Context, c apiv1.AdminClient) error {
			prepare := c.PrepareX509Authority
			if kind == "jwt" {
				prepare = c.PrepareJWTAuthority
			}
			a, err := prepare(ctx, &apiv1.PrepareLocalAuthorityRequest{})
			if err != nil {
				return err
			}
			if *output == "json" {
				return writeProtoJSON(stdout, a)
			}
			fmt.Fprintf(stdout, "Prepared %s:\n", label)
			printAuthority(stdout, a)
			return nil
		}
	case "activate", "taint", "revoke":
		id := fs.String("authorityID", "", "ID of the "+label+" (see `localauthority "+kind+" show`)")
		output := fs.String("output", "pretty", "output format: pretty or json")
		return func(ctx context.Context, c apiv1.AdminClient) error {
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
				return writeProtoJSON(stdout, a)
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
