package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/x509util"
)

// maxDataFile bounds an -data file.
const maxDataFile = 256 << 20

// readDataFile reads an -data file, or stdin for "-", up to maxDataFile.
func readDataFile(path string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxDataFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxDataFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxDataFile)
	}
	return data, nil
}

// parseEntries parses the -data format of `entry create` and `entry
// update`: SPIRE's -data file ({"entries": [{"entry_id": ..., "spiffe_id":
// ..., "parent_id": ..., "selectors": [{"type": ..., "value": ...}], ...}]})
// and SPIRE's `entry show -output json` (IDs as {"trust_domain", "path"},
// "id", 64-bit integers as strings). name labels errors.
//
// An entry's ID ("entry_id" or "id") is kept: create honours it, as SPIRE
// does. Node entries parented to SPIRE's server (spiffe://<td>/spire/server)
// become Hallmark node entries (spiffe://<td>/hallmark/server); entries
// parented to a SPIRE agent are mapped or refused (hallmarkParent). The legacy
// "ttl" is the X.509-SVID TTL when "x509_svid_ttl" is unset. Fields the
// server assigns ("revision_number", "created_at") are dropped. Features
// Hallmark does not have are refused when set: an expiry ("entryExpiry",
// "expires_at") and "store_svid".
func parseEntries(data []byte, name string) ([]*apiv1.Entry, error) {
	var doc struct {
		Entries []map[string]json.RawMessage `json:"entries"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out := make([]*apiv1.Entry, 0, len(doc.Entries))
	for i, raw := range doc.Entries {
		if raw == nil {
			return nil, fmt.Errorf("%s: entry %d: not an object", name, i)
		}
		if err := spireEntryFields(raw); err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", name, i, err)
		}
		b, _ := json.Marshal(raw)
		e := &apiv1.Entry{}
		if err := (protojson.UnmarshalOptions{}).Unmarshal(b, e); err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", name, i, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// spireEntryFields rewrites one entry of a SPIRE file, in place, into the
// fields of apiv1.Entry (see parseEntries).
func spireEntryFields(raw map[string]json.RawMessage) error {
	for _, k := range []string{"spiffe_id", "parent_id"} {
		v, ok := raw[k]
		if !ok || len(v) == 0 {
			continue
		}
		var id string
		if v[0] == '{' {
			var obj struct {
				TrustDomain string `json:"trust_domain"`
				Path        string `json:"path"`
			}
			if err := json.Unmarshal(v, &obj); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			id = "spiffe://" + obj.TrustDomain + obj.Path
		} else if err := json.Unmarshal(v, &id); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		if k == "parent_id" {
			var err error
			if id, err = hallmarkParent(id); err != nil {
				return err
			}
		}
		raw[k], _ = json.Marshal(id)
	}
	if v, ok := raw["entry_id"]; ok {
		if _, dup := raw["id"]; dup {
			return errors.New("both entry_id and id")
		}
		raw["id"] = v
		delete(raw, "entry_id")
	}
	for _, k := range []string{"entryExpiry", "expires_at"} {
		v, ok := raw[k]
		if !ok {
			continue
		}
		n, err := jsonInt(v)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		if n != 0 {
			return fmt.Errorf("%s %d: Hallmark entries do not expire; drop the field and delete the entry when it should end", k, n)
		}
		delete(raw, k)
	}
	if v, ok := raw["store_svid"]; ok {
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return fmt.Errorf("store_svid: %w", err)
		}
		if b {
			return errors.New("store_svid: Hallmark has no SVIDStore plugins; fetch SVIDs over the Workload API or SDS")
		}
		delete(raw, "store_svid")
	}
	if v, ok := raw["ttl"]; ok {
		ttl, err := jsonInt(v)
		if err != nil {
			return fmt.Errorf("ttl: %w", err)
		}
		x509, err := jsonInt(raw["x509_svid_ttl"])
		if err != nil {
			return fmt.Errorf("x509_svid_ttl: %w", err)
		}
		if x509 == 0 {
			raw["x509_svid_ttl"], _ = json.Marshal(ttl)
		}
		delete(raw, "ttl")
	}
	delete(raw, "revision_number")
	delete(raw, "created_at")
	return nil
}

// Attestors whose SPIRE agent IDs (spiffe://<td>/spire/agent/<kind>/...)
// have the same segments as Hallmark's (spiffe://<td>/agent/<kind>/...):
// the same node gets the same ID from both, once Hallmark's attestor is
// configured like SPIRE's (k8s_psat cluster names, aws_iid accounts).
var sameAgentIDs = map[string]bool{"k8s_psat": true, "aws_iid": true}

// hallmarkParent maps the parent of an entry exported from SPIRE onto
// Hallmark's: node entries (parent spiffe://<td>/spire/server) onto
// spiffe://<td>/hallmark/server, and entries parented to a SPIRE agent
// whose ID Hallmark's attestor reproduces onto that ID. An entry parented
// to any other SPIRE agent would be stored and never match: it is refused,
// naming the way out.
func hallmarkParent(id string) (string, error) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return id, nil
	}
	td, path, _ := strings.Cut(rest, "/")
	switch {
	case path == "spire/server":
		return "spiffe://" + td + "/hallmark/server", nil
	case strings.HasPrefix(path, "spire/agent/"):
		kind, _, _ := strings.Cut(strings.TrimPrefix(path, "spire/agent/"), "/")
		if sameAgentIDs[kind] {
			return "spiffe://" + td + "/" + strings.TrimPrefix(path, "spire/"), nil
		}
		return "", fmt.Errorf("parent_id %s: an entry parented to a SPIRE %s agent never matches a Hallmark agent; "+
			"parent it to a node alias instead (a node entry, or token generate -spiffeID for join tokens): docs/migrate-from-spire.md", id, kind)
	}
	return id, nil
}

// jsonInt reads an integer written as a JSON number or, as protojson
// writes 64-bit integers, a string; absent or null is 0.
func jsonInt(v json.RawMessage) (int64, error) {
	if len(v) == 0 || string(v) == "null" {
		return 0, nil
	}
	if v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, err
		}
		return strconv.ParseInt(s, 10, 64)
	}
	var n int64
	err := json.Unmarshal(v, &n)
	return n, err
}

func writeSPIFFEBundle(w io.Writer, b *apiv1.Bundle) error {
	td, err := spiffeid.TrustDomainFromString(b.GetTrustDomain())
	if err != nil {
		return err
	}
	certs, err := x509util.ParseChain(b.GetX509Authorities())
	if err != nil {
		return err
	}
	sb := spiffebundle.FromX509Authorities(td, certs)
	sb.SetSequenceNumber(uint64(b.GetSequenceNumber()))
	out, err := sb.Marshal()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", out)
	return err
}

// writeProtoJSON prints m as protojson with proto field names, indented
// by encoding/json: protojson's own layout is deliberately unstable (it
// varies its whitespace from build to build), and output that scripts
// and golden files read should not be.
func writeProtoJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}
