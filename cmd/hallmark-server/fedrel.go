package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/server/federation"
)

// Federation relationships in SPIRE's JSON (protojson of its
// types.FederationRelationship): the profile is the oneof https_web {} or
// https_spiffe {endpoint_spiffe_id}; trust_domain_bundle is the bundle
// held, null when none.
type (
	httpsSPIFFEJSON struct {
		EndpointSPIFFEID string `json:"endpoint_spiffe_id"`
	}
	relationshipJSON struct {
		TrustDomain       string           `json:"trust_domain"`
		BundleEndpointURL string           `json:"bundle_endpoint_url"`
		HTTPSWeb          *struct{}        `json:"https_web,omitempty"`
		HTTPSSPIFFE       *httpsSPIFFEJSON `json:"https_spiffe,omitempty"`
		TrustDomainBundle *bundleJSON      `json:"trust_domain_bundle"`
	}
	relationshipListJSON struct {
		FederationRelationships []relationshipJSON `json:"federation_relationships"`
		NextPageToken           string             `json:"next_page_token"`
	}
	relationshipResultJSON struct {
		Status                 statusJSON        `json:"status"`
		FederationRelationship *relationshipJSON `json:"federation_relationship"`
	}
	relationshipResultsJSON struct {
		Results []relationshipResultJSON `json:"results"`
	}
	relationshipDeleteResultJSON struct {
		Status      statusJSON `json:"status"`
		TrustDomain string     `json:"trust_domain"`
	}
	relationshipDeleteJSON struct {
		Results []relationshipDeleteResultJSON `json:"results"`
	}
)

// relationshipCommand returns the run function of federation list, show,
// create, update and delete, or nil for other commands.
func relationshipCommand(cmd string, fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	switch cmd {
	case "federation list":
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			resp, err := c.ListFederationRelationships(ctx, &apiv1.ListFederationRelationshipsRequest{})
			if err != nil {
				return err
			}
			if *output == "json" {
				bundles, err := heldBundles(ctx, c)
				if err != nil {
					return err
				}
				out := relationshipListJSON{FederationRelationships: []relationshipJSON{}}
				for _, r := range resp.GetRelationships() {
					if !r.GetStatic() { // a static bundle is no relationship (see bundle list)
						out.FederationRelationships = append(out.FederationRelationships, toRelationshipJSON(r, bundles))
					}
				}
				return writeJSON(stdout, out)
			}
			n := len(resp.GetRelationships())
			fmt.Fprintf(stdout, "Found %d federation relationship%s\n", n, plural(n))
			for _, r := range resp.GetRelationships() {
				fmt.Fprintln(stdout)
				printRelationship(stdout, r)
			}
			return nil
		}
	case "federation show":
		td := fs.String("trustDomain", "", "the trust domain of the relationship to show")
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if *td == "" {
				return errors.New("-trustDomain is required")
			}
			want, err := spiffeid.TrustDomainFromString(*td)
			if err != nil {
				return fmt.Errorf("-trustDomain %q: %w", *td, err)
			}
			resp, err := c.ListFederationRelationships(ctx, &apiv1.ListFederationRelationshipsRequest{})
			if err != nil {
				return err
			}
			for _, r := range resp.GetRelationships() {
				if r.GetTrustDomain() != want.Name() || *output == "json" && r.GetStatic() {
					continue
				}
				if *output == "json" {
					bundles, err := heldBundles(ctx, c)
					if err != nil {
						return err
					}
					return writeJSON(stdout, toRelationshipJSON(r, bundles))
				}
				fmt.Fprintf(stdout, "Found a federation relationship with trust domain %s\n\n", want.Name())
				printRelationship(stdout, r)
				return nil
			}
			return fmt.Errorf("no federation relationship with trust domain %q (see federation list)", want.Name())
		}
	case "federation create", "federation update":
		data := fs.String("data", "", "path to a JSON file of relationships (SPIRE's {\"federationRelationships\": [...]}); - for stdin")
		var flags relationshipFlags
		flags.define(fs)
		output := outputFlag(fs)
		verb := cmd[len("federation "):]
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			specs, err := relationshipSpecs(fs, &flags, *data)
			if err != nil {
				return err
			}
			call := c.CreateFederationRelationship
			if verb == "update" {
				call = c.UpdateFederationRelationship
			}
			return changeRelationships(ctx, c, stdout, verb, *output, specs, call)
		}
	case "federation delete":
		id := fs.String("id", "", "trust domain of the dynamic relationship to delete")
		output := outputFlag(fs)
		return func(ctx context.Context, c apiv1.AdminClient) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if *id == "" {
				return errors.New("-id is required")
			}
			_, err := c.DeleteFederationRelationship(ctx, &apiv1.DeleteFederationRelationshipRequest{TrustDomain: *id})
			if err != nil && ctx.Err() != nil {
				return err
			}
			if *output == "json" {
				if werr := writeJSON(stdout, relationshipDeleteJSON{Results: []relationshipDeleteResultJSON{
					{Status: statusOf(err), TrustDomain: *id}}}); werr != nil {
					return werr
				}
			}
			if err != nil {
				return fmt.Errorf("failed to delete federation relationship %q: %w", *id, err)
			}
			if *output != "json" {
				fmt.Fprintln(stdout, "Federation relationship deleted.")
			}
			return nil
		}
	}
	return nil
}

// statusOf is SPIRE's result status of err (code 0, "OK" for nil).
func statusOf(err error) statusJSON {
	if err == nil {
		return statusJSON{Code: 0, Message: "OK"}
	}
	st := status.Convert(err)
	return statusJSON{Code: int32(st.Code()), Message: st.Message()}
}

// heldBundles returns the federated bundles the server holds, by trust
// domain name.
func heldBundles(ctx context.Context, c apiv1.AdminClient) (map[string]*bundleJSON, error) {
	resp, err := c.ListFederatedBundles(ctx, &apiv1.ListFederatedBundlesRequest{})
	if err != nil {
		return nil, err
	}
	out := make(map[string]*bundleJSON, len(resp.GetBundles()))
	for _, b := range resp.GetBundles() {
		j, err := federatedBundleJSON(b)
		if err != nil {
			return nil, fmt.Errorf("bundle of %s: %w", b.GetTrustDomain(), err)
		}
		out[b.GetTrustDomain()] = &j
	}
	return out, nil
}

func toRelationshipJSON(r *apiv1.FederationRelationship, bundles map[string]*bundleJSON) relationshipJSON {
	out := relationshipJSON{TrustDomain: r.GetTrustDomain(), BundleEndpointURL: r.GetBundleEndpointUrl(),
		TrustDomainBundle: bundles[r.GetTrustDomain()]}
	switch federation.Profile(r.GetBundleEndpointProfile()) {
	case federation.ProfileHTTPSWeb:
		out.HTTPSWeb = &struct{}{}
	case federation.ProfileHTTPSSPIFFE:
		out.HTTPSSPIFFE = &httpsSPIFFEJSON{EndpointSPIFFEID: r.GetEndpointSpiffeId()}
	}
	return out
}

// changeRelationships creates or updates (verb) each spec and prints the
// results in SPIRE's shapes; it fails when any failed.
func changeRelationships(ctx context.Context, c apiv1.AdminClient, stdout io.Writer, verb, output string, specs []*apiv1.FederationRelationshipSpec,
	call func(context.Context, *apiv1.FederationRelationshipSpec, ...grpc.CallOption) (*apiv1.FederationRelationship, error)) error {
	results := relationshipResultsJSON{Results: make([]relationshipResultJSON, 0, len(specs))}
	var failed int
	var bundles map[string]*bundleJSON
	for _, spec := range specs {
		r, err := call(ctx, spec)
		if err != nil && ctx.Err() != nil {
			return err
		}
		res := relationshipResultJSON{Status: statusOf(err)}
		if err != nil {
			failed++
			if output != "json" {
				fmt.Fprintf(stdout, "\nFailed to %s the following federation relationship (code: %s, msg: %q):\n", verb,
					status.Code(err), status.Convert(err).Message())
				printSpec(stdout, spec)
			}
		} else {
			if bundles == nil {
				if bundles, err = heldBundles(ctx, c); err != nil {
					return err
				}
			}
			j := toRelationshipJSON(r, bundles)
			res.FederationRelationship = &j
			if output != "json" {
				fmt.Fprintln(stdout)
				printRelationship(stdout, r)
			}
		}
		results.Results = append(results.Results, res)
	}
	if output == "json" {
		if err := writeJSON(stdout, results); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("failed to %s %d of %d federation relationships", verb, failed, len(specs))
	}
	return nil
}

func printSpec(w io.Writer, s *apiv1.FederationRelationshipSpec) {
	fmt.Fprintf(w, "Trust domain      : %s\n", s.GetTrustDomain())
	fmt.Fprintf(w, "Bundle endpoint   : %s\n", s.GetBundleEndpointUrl())
	fmt.Fprintf(w, "Endpoint profile  : %s\n", s.GetBundleEndpointProfile())
	if s.GetEndpointSpiffeId() != "" {
		fmt.Fprintf(w, "Endpoint SPIFFE ID: %s\n", s.GetEndpointSpiffeId())
	}
}

// relationshipFlags are SPIRE's flags of federation create and update.
type relationshipFlags struct {
	trustDomain, url, profile, endpointID, bundlePath, bundleFormat *string
}

func (f *relationshipFlags) define(fs *flag.FlagSet) {
	f.trustDomain = fs.String("trustDomain", "", "name of the trust domain to federate with (e.g. example.org)")
	f.url = fs.String("bundleEndpointURL", "", "https:// URL of the trust domain's SPIFFE bundle endpoint")
	f.profile = fs.String("bundleEndpointProfile", "", "endpoint profile: https_web or https_spiffe")
	f.endpointID = fs.String("endpointSpiffeID", "", "SPIFFE ID of the bundle endpoint server (https_spiffe only)")
	f.bundlePath = fs.String("trustDomainBundlePath", "", "file holding the trust domain's bundle (optional; https_spiffe needs one unless set with bundle set)")
	f.bundleFormat = fs.String("trustDomainBundleFormat", "pem", "format of the bundle file: pem or spiffe")
}

// relationshipFile is SPIRE's -data file of federation create|update.
type relationshipFile struct {
	FederationRelationships []struct {
		TrustDomain             string          `json:"trustDomain"`
		BundleEndpointURL       string          `json:"bundleEndpointURL"`
		BundleEndpointProfile   string          `json:"bundleEndpointProfile"`
		EndpointSPIFFEID        string          `json:"endpointSPIFFEID"`
		TrustDomainBundle       json.RawMessage `json:"trustDomainBundle"`
		TrustDomainBundleFormat string          `json:"trustDomainBundleFormat"`
	} `json:"federationRelationships"`
}

// relationshipSpecs builds the relationships to send: from -data, or from
// the flags (not both, as SPIRE).
func relationshipSpecs(fs *flag.FlagSet, f *relationshipFlags, data string) ([]*apiv1.FederationRelationshipSpec, error) {
	if data != "" {
		set := false
		fs.Visit(func(fl *flag.Flag) {
			switch fl.Name {
			case "data", "output", "socketPath":
			default:
				set = true
			}
		})
		if set {
			return nil, errors.New("cannot use other flags to specify relationship fields when -data is set")
		}
		return relationshipSpecsFromFile(data)
	}
	if *f.trustDomain == "" {
		return nil, errors.New("-trustDomain is required")
	}
	if *f.url == "" {
		return nil, errors.New("-bundleEndpointURL is required")
	}
	spec, err := relationshipSpec(*f.trustDomain, *f.url, *f.profile, *f.endpointID)
	if err != nil {
		return nil, err
	}
	if *f.bundlePath != "" {
		td, _ := spiffeid.TrustDomainFromString(spec.TrustDomain)
		if spec.TrustDomainBundle, err = readBundleInput(td, *f.bundlePath, *f.bundleFormat); err != nil {
			return nil, err
		}
	}
	return []*apiv1.FederationRelationshipSpec{spec}, nil
}

func relationshipSpec(trustDomain, url, profile, endpointID string) (*apiv1.FederationRelationshipSpec, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return nil, fmt.Errorf("trust domain %q: %w", trustDomain, err)
	}
	switch federation.Profile(profile) {
	case federation.ProfileHTTPSWeb:
	case federation.ProfileHTTPSSPIFFE:
		if endpointID == "" {
			return nil, errors.New("the endpoint SPIFFE ID is required with the https_spiffe profile")
		}
	default:
		return nil, fmt.Errorf("unknown bundle endpoint profile %q (https_web or https_spiffe)", profile)
	}
	return &apiv1.FederationRelationshipSpec{TrustDomain: td.Name(), BundleEndpointUrl: url, BundleEndpointProfile: profile,
		EndpointSpiffeId: endpointID}, nil
}

func relationshipSpecsFromFile(path string) ([]*apiv1.FederationRelationshipSpec, error) {
	raw, err := readDataFile(path)
	if err != nil {
		return nil, err
	}
	var doc relationshipFile
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.FederationRelationships) == 0 {
		return nil, fmt.Errorf(`%s: no relationships (want {"federationRelationships": [...]})`, path)
	}
	specs := make([]*apiv1.FederationRelationshipSpec, 0, len(doc.FederationRelationships))
	for i, r := range doc.FederationRelationships {
		if r.TrustDomain == "" || r.BundleEndpointURL == "" {
			return nil, fmt.Errorf("%s: federationRelationships[%d]: trustDomain and bundleEndpointURL are required", path, i)
		}
		spec, err := relationshipSpec(r.TrustDomain, r.BundleEndpointURL, r.BundleEndpointProfile, r.EndpointSPIFFEID)
		if err != nil {
			return nil, fmt.Errorf("%s: federationRelationships[%d]: %w", path, i, err)
		}
		if len(r.TrustDomainBundle) > 0 && string(r.TrustDomainBundle) != "null" {
			td, _ := spiffeid.TrustDomainFromString(spec.TrustDomain)
			format, bundle := r.TrustDomainBundleFormat, []byte(r.TrustDomainBundle)
			if format == "" {
				format = "pem"
			}
			if format == "pem" { // a JSON string holding PEM
				var pemText string
				if err := json.Unmarshal(r.TrustDomainBundle, &pemText); err != nil {
					return nil, fmt.Errorf("%s: federationRelationships[%d]: trustDomainBundle: want a PEM string with format pem: %w", path, i, err)
				}
				bundle = []byte(pemText)
			}
			name := fmt.Sprintf("%s: federationRelationships[%d].trustDomainBundle", path, i)
			if spec.TrustDomainBundle, err = parseBundleInput(td, bundle, name, format); err != nil {
				return nil, err
			}
		}
		specs = append(specs, spec)
	}
	return specs, nil
}
