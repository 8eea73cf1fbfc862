package sds

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxFileSize bounds a file-root or file-cert file.
const maxFileSize = 1 << 20

// checkDir reports whether dir is an existing directory.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// readFileResource serves an Istio file-root: or file-cert: name.
func (h *Handler) readFileResource(c callerInfo, r ref) (*resource, error) {
	switch r.kind {
	case refFileRoot:
		b, err := h.readFile(c, r.root)
		if err != nil {
			return nil, err
		}
		roots, err := ParseRootPEM(b)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "sds: %s: %v", r.root, err)
		}
		return &resource{name: r.name, kind: resValidation, rootPEM: roots}, nil
	case refFileCert:
		cb, err := h.readFile(c, r.cert)
		if err != nil {
			return nil, err
		}
		kb, err := h.readFile(c, r.key)
		if err != nil {
			return nil, err
		}
		chain, key, err := ParseKeyPairPEM(cb, kb)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "sds: %s and %s: %v", r.cert, r.key, err)
		}
		return &resource{name: r.name, kind: resCert, certPEM: chain, keyPEM: key}, nil
	}
	return nil, status.Errorf(codes.Internal, "sds: %q is not a file name", r.name)
}

// readFile reads path for caller c. path must be absolute and lie in
// FileDir, and stay there through every symlink; every directory on the
// way from "/" must be searchable and the file readable by c's uid, gid
// and supplementary groups (see walk.go): the agent, usually root, must
// not become a way for a workload to read files it could not read itself.
// The file must be a regular file of at most 1 MiB.
func (h *Handler) readFile(c callerInfo, p string) ([]byte, error) {
	if h.cfg.FileDir == "" {
		return nil, status.Errorf(codes.InvalidArgument,
			"sds: file-root:/file-cert: names are disabled; set file_dir in the agent's sds block to serve files from that directory")
	}
	if !filepath.IsAbs(p) {
		return nil, status.Errorf(codes.InvalidArgument, "sds: file %q: want an absolute path", truncate(p))
	}
	dir := filepath.Clean(h.cfg.FileDir)
	rel, err := filepath.Rel(dir, filepath.Clean(p))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, status.Errorf(codes.PermissionDenied, "sds: file %q is outside file_dir %s", truncate(p), dir)
	}
	w := walker{cred: credOf(c)}
	f, err := w.openFile(dir, rel)
	if err != nil {
		var denied *deniedError
		switch {
		case errors.Is(err, errEscape):
			return nil, status.Errorf(codes.PermissionDenied, "sds: file %q leads outside file_dir %s", truncate(p), dir)
		case errors.As(err, &denied):
			return nil, status.Errorf(codes.PermissionDenied, "sds: file %q is not readable by the caller (%s): %v", truncate(p), w.cred, denied)
		case errors.Is(err, errNotRegular):
			return nil, status.Errorf(codes.InvalidArgument, "sds: %q is not a regular file", truncate(p))
		case errors.Is(err, os.ErrNotExist):
			return nil, status.Errorf(codes.NotFound, "sds: file %q does not exist", truncate(p))
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			// The caller may; the agent itself may not (it runs without
			// CAP_DAC_READ_SEARCH, say).
			return nil, status.Errorf(codes.PermissionDenied, "sds: the agent itself cannot read file %q: %v", truncate(p), err)
		case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP), errors.Is(err, errTooLong):
			return nil, status.Errorf(codes.InvalidArgument, "sds: file %q: %v", truncate(p), err)
		}
		return nil, status.Errorf(codes.Unavailable, "sds: open %q: %v", truncate(p), err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, status.Errorf(codes.Unavailable, "sds: stat %q: %v", truncate(p), err)
	}
	if st.Size > maxFileSize {
		return nil, status.Errorf(codes.InvalidArgument, "sds: %q is larger than %d bytes", truncate(p), maxFileSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "sds: read %q: %v", truncate(p), err)
	}
	if len(b) > maxFileSize {
		return nil, status.Errorf(codes.InvalidArgument, "sds: %q is larger than %d bytes", truncate(p), maxFileSize)
	}
	return b, nil
}

// ParseRootPEM parses a file-root file: one or more PEM CERTIFICATE blocks,
// each a CA certificate. Other blocks are an error. It returns the
// certificates re-encoded as PEM, without anything else the file held.
func ParseRootPEM(b []byte) ([]byte, error) {
	certs, err := parseCertsPEM(b)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("certificate %q is not a CA", c.Subject)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out, nil
}

// ParseKeyPairPEM parses a file-cert pair: a PEM certificate chain, leaf
// first, and a PEM private key that matches the leaf. It returns both
// re-encoded as PEM.
func ParseKeyPairPEM(certPEM, keyPEM []byte) (chain, key []byte, err error) {
	certs, err := parseCertsPEM(certPEM)
	if err != nil {
		return nil, nil, err
	}
	var keyBlock *pem.Block
	for rest := keyPEM; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if strings.HasSuffix(blk.Type, "PRIVATE KEY") {
			if keyBlock != nil {
				return nil, nil, errors.New("key file holds more than one private key")
			}
			keyBlock = blk
		}
	}
	if keyBlock == nil {
		return nil, nil, errors.New("key file holds no PEM private key")
	}
	for _, c := range certs {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	key = pem.EncodeToMemory(&pem.Block{Type: keyBlock.Type, Bytes: keyBlock.Bytes})
	if _, err := tls.X509KeyPair(chain, key); err != nil {
		return nil, nil, fmt.Errorf("key pair: %w", err)
	}
	return chain, key, nil
}

// maxPEMCerts bounds the certificates in one file.
const maxPEMCerts = 64

func parseCertsPEM(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", truncate(blk.Type))
		}
		if len(certs) == maxPEMCerts {
			return nil, fmt.Errorf("more than %d certificates", maxPEMCerts)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}
