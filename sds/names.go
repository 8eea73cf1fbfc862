package sds

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits on what a client may ask for.
const (
	maxNameLen = 4096 // file paths included
	maxNames   = 256  // per request and per stream
)

// refKind is the kind of a resource name.
type refKind int

const (
	refDefaultSVID refKind = iota + 1 // the caller's default SVID
	refSVID                           // a SPIFFE ID
	refOwnBundle                      // ROOTCA
	refAllBundles                     // ALL
	refBundle                         // a trust-domain ID
	refFileRoot                       // Istio file-root:<path>
	refFileCert                       // Istio file-cert:<cert>~<key>
)

// ref is a parsed resource name.
type ref struct {
	name string
	kind refKind
	id   spiffeid.ID          // refSVID
	td   spiffeid.TrustDomain // refBundle
	// file paths: root for refFileRoot, cert and key for refFileCert
	root, cert, key string
}

func (r ref) isFile() bool { return r.kind == refFileRoot || r.kind == refFileCert }

// parseName parses a resource name. The error is an InvalidArgument status
// that lists what names mean.
func (h *Handler) parseName(name string) (ref, error) {
	r := ref{name: name}
	switch {
	case len(name) > maxNameLen:
		return r, status.Errorf(codes.InvalidArgument, "sds: resource name longer than %d bytes", maxNameLen)
	case name == h.cfg.DefaultSVIDName:
		r.kind = refDefaultSVID
	case name == h.cfg.DefaultBundleName:
		r.kind = refOwnBundle
	case name == h.cfg.DefaultAllBundlesName:
		r.kind = refAllBundles
	case strings.HasPrefix(name, "spiffe://"):
		id, err := spiffeid.FromString(name)
		if err != nil {
			return r, status.Errorf(codes.InvalidArgument, "sds: resource name %q: %v", name, err)
		}
		if id.Path() == "" {
			r.kind, r.td = refBundle, id.TrustDomain()
		} else {
			r.kind, r.id = refSVID, id
		}
	case strings.HasPrefix(name, fileRootPrefix):
		r.kind, r.root = refFileRoot, name[len(fileRootPrefix):]
		if r.root == "" {
			return r, status.Errorf(codes.InvalidArgument, "sds: resource name %q: want file-root:<path>", name)
		}
	case strings.HasPrefix(name, fileCertPrefix):
		cert, key, ok := strings.Cut(name[len(fileCertPrefix):], "~")
		if !ok || cert == "" || key == "" || strings.Contains(key, "~") {
			return r, status.Errorf(codes.InvalidArgument, "sds: resource name %q: want file-cert:<cert path>~<key path>", name)
		}
		r.kind, r.cert, r.key = refFileCert, cert, key
	default:
		return r, status.Errorf(codes.InvalidArgument,
			"sds: unknown resource name %q: want %q (your SVID), %q (your trust bundle), %q (all bundles), a SPIFFE ID, "+
				"a trust domain ID such as \"spiffe://example.org\", \"file-root:<path>\" or \"file-cert:<cert>~<key>\"",
			truncate(name), h.cfg.DefaultSVIDName, h.cfg.DefaultBundleName, h.cfg.DefaultAllBundlesName)
	}
	return r, nil
}

// parseNames parses a subscription. Duplicates are dropped.
func (h *Handler) parseNames(names []string) ([]ref, error) {
	if len(names) > maxNames {
		return nil, status.Errorf(codes.InvalidArgument, "sds: more than %d resource names", maxNames)
	}
	refs := make([]ref, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		r, err := h.parseName(n)
		if err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	return refs, nil
}

func truncate(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}

// describe names the caller in errors and logs.
func describe(c callerInfo) string {
	return fmt.Sprintf("pid %d uid %d", c.PID, c.UID)
}
