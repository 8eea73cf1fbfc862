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
// FileDir, and stay there through every symlink (openat2 RESOLVE_BENEATH);
// it must be a regular file of at most 1 MiB that c's uid or gid could
// read by its mode bits: the agent, usually root, must not become a way
// for a workload to read files it could not read itself.
func (h *Handler) readFile(c callerInfo, path string) ([]byte, error) {
	if h.cfg.FileDir == "" {
		return nil, status.Errorf(codes.InvalidArgument,
			"sds: file-root:/file-cert: names are disabled; set file_dir in the agent's sds block to serve files from that directory")
	}
	if !filepath.IsAbs(path) {
		return nil, status.Errorf(codes.InvalidArgument, "sds: file %q: want an absolute path", truncate(path))
	}
	dir := filepath.Clean(h.cfg.FileDir)
	rel, err := filepath.Rel(dir, filepath.Clean(path))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, status.Errorf(codes.PermissionDenied, "sds: file %q is outside file_dir %s", truncate(path), dir)
	}
	f, err := openBeneath(dir, rel)
	if err != nil {
		if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ELOOP) {
			return nil, status.Errorf(codes.PermissionDenied, "sds: file %q leads outside file_dir %s", truncate(path), dir)
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, status.Errorf(codes.NotFound, "sds: file %q does not exist", truncate(path))
		}
		return nil, status.Errorf(codes.Unavailable, "sds: open %q: %v", truncate(path), err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, status.Errorf(codes.Unavailable, "sds: stat %q: %v", truncate(path), err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, status.Errorf(codes.InvalidArgument, "sds: %q is not a regular file", truncate(path))
	case st.Size > maxFileSize:
		return nil, status.Errorf(codes.InvalidArgument, "sds: %q is larger than %d bytes", truncate(path), maxFileSize)
	case !mayRead(st, c.UID, c.GID):
		return nil, status.Errorf(codes.PermissionDenied, "sds: %q is not readable by the caller (uid %d, gid %d)", truncate(path), c.UID, c.GID)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "sds: read %q: %v", truncate(path), err)
	}
	if len(b) > maxFileSize {
		return nil, status.Errorf(codes.InvalidArgument, "sds: %q is larger than %d bytes", truncate(path), maxFileSize)
	}
	return b, nil
}

// openBeneath opens rel inside dir without letting any path component or
// symlink lead out of dir.
func openBeneath(dir, rel string) (*os.File, error) {
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat2(dfd, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, rel)), nil
}

// mayRead reports whether uid/gid may read a file with st's owner and
// mode. Supplementary groups are not known from the socket and do not
// count; root may read anything.
func mayRead(st unix.Stat_t, uid, gid uint32) bool {
	switch {
	case uid == 0:
		return true
	case st.Uid == uid:
		return st.Mode&0o400 != 0
	case st.Gid == gid:
		return st.Mode&0o040 != 0
	}
	return st.Mode&0o004 != 0
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
