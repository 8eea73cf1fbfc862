package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/x509util"
)

// maxDataFile bounds an -data file.
const maxDataFile = 256 << 20

// readEntriesFile reads SPIRE's `entry create -data` format:
// {"entries": [{"spiffe_id": ..., "parent_id": ..., "selectors": [{"type": ..., "value": ...}], ...}]}.
// IDs may be strings or SPIRE's {"trust_domain": ..., "path": ...} objects.
// Entry IDs ("id", or SPIRE's "entry_id") are dropped: the server assigns them.
func readEntriesFile(path string) ([]*apiv1.Entry, error) {
	data, err := readDataFile(path)
	if err != nil {
		return nil, err
	}
	return parseEntries(data, path, false)
}

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

// parseEntries parses the -data format (see readEntriesFile); name labels
// errors. With keepIDs, an entry's "entry_id" (SPIRE's name) or "id" is
// kept as its ID, as `entry update -data` needs; otherwise both are
// dropped.
func parseEntries(data []byte, name string, keepIDs bool) ([]*apiv1.Entry, error) {
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
		for _, k := range []string{"spiffe_id", "parent_id"} {
			v, ok := raw[k]
			if !ok || len(v) == 0 || v[0] != '{' {
				continue
			}
			var obj struct {
				TrustDomain string `json:"trust_domain"`
				Path        string `json:"path"`
			}
			if err := json.Unmarshal(v, &obj); err != nil {
				return nil, fmt.Errorf("%s: entry %d: %s: %w", name, i, k, err)
			}
			s, _ := json.Marshal("spiffe://" + obj.TrustDomain + obj.Path)
			raw[k] = s
		}
		if v, ok := raw["entry_id"]; ok && keepIDs {
			if _, dup := raw["id"]; dup {
				return nil, fmt.Errorf("%s: entry %d: both entry_id and id", name, i)
			}
			raw["id"] = v
		}
		delete(raw, "entry_id")
		if !keepIDs {
			delete(raw, "id")
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

func writeProtoJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
