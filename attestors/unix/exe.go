package unix

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// hashCacheSize bounds the executable hash cache (entries of ~150 bytes).
const hashCacheSize = 1024

type executable struct {
	path   string
	sha256 string // hex; empty if not hashed
}

// executable returns the path of the process's executable as the kernel
// reports it and, if configured, its SHA-256.
//
// The path is readlink(/proc/<pid>/exe) verbatim: for an executable deleted
// (or replaced, as by a package upgrade) since it was started the kernel
// appends " (deleted)", and the selector keeps it, because the code running
// is no longer the file at that path. The hash is always computed through
// /proc/<pid>/exe, which opens the very file the process runs, deleted or
// not, wherever it has been moved.
func (a *Attestor) executable(ctx context.Context, dir string) (executable, error) {
	link := dir + "/exe"
	fd, err := openRead(link)
	if err != nil {
		return executable{}, fmt.Errorf("open executable: %w", err)
	}
	f := os.NewFile(uintptr(fd), link)
	defer f.Close()
	var before syscall.Stat_t
	if err := syscall.Fstat(fd, &before); err != nil {
		return executable{}, fmt.Errorf("stat executable: %w", err)
	}
	path, err := os.Readlink(link)
	if err != nil {
		return executable{}, fmt.Errorf("read executable path: %w", err)
	}
	// The process may exec between the open and the readlink; then the
	// path would not be the opened file's.
	var after syscall.Stat_t
	if err := syscall.Stat(link, &after); err != nil {
		return executable{}, fmt.Errorf("stat executable: %w", err)
	}
	if before.Dev != after.Dev || before.Ino != after.Ino {
		return executable{}, fmt.Errorf("executable changed during attestation")
	}
	exe := executable{path: path}
	if a.sizeLimit == 0 {
		return exe, nil
	}
	key := keyOf(&before)
	if sum, ok := a.hashes.get(key); ok {
		exe.sha256 = sum
		return exe, nil
	}
	if a.sizeLimit > 0 && before.Size > a.sizeLimit {
		a.log.Warn("unix: executable larger than the workload size limit, no sha256 selector",
			"path", path, "size", before.Size, "limit", a.sizeLimit)
		return exe, nil
	}
	sum, err := a.hash(ctx, f)
	if err != nil {
		return executable{}, err
	}
	var done syscall.Stat_t
	if err := syscall.Fstat(fd, &done); err != nil {
		return executable{}, fmt.Errorf("stat executable: %w", err)
	}
	if keyOf(&done) != key {
		return executable{}, fmt.Errorf("executable %s modified while being hashed", path)
	}
	a.hashes.put(key, sum)
	exe.sha256 = sum
	return exe, nil
}

// hash returns the hex SHA-256 of f, reading at most the size limit.
func (a *Attestor) hash(ctx context.Context, f *os.File) (string, error) {
	a.hashCount.Add(1)
	h := sha256.New()
	var r io.Reader = f
	if a.sizeLimit > 0 {
		r = io.LimitReader(f, a.sizeLimit+1)
	}
	buf := make([]byte, 256<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("hash executable: %w", err)
		}
		m, err := r.Read(buf)
		h.Write(buf[:m])
		n += int64(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("hash executable: %w", err)
		}
	}
	if a.sizeLimit > 0 && n > a.sizeLimit {
		return "", fmt.Errorf("executable grew past the workload size limit while being hashed")
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fileKey identifies a version of a file's contents. ctime is included
// because mtime can be set back by the file's owner (utimes), ctime cannot.
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

func keyOf(st *syscall.Stat_t) fileKey {
	return fileKey{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// hashCache is a bounded LRU of executable hashes.
type hashCache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *hashEntry, most recently used first; guarded by mu
	m   map[fileKey]*list.Element
}

type hashEntry struct {
	key fileKey
	sum string
}

func (c *hashCache) init(max int) {
	c.max = max
	c.ll = list.New()
	c.m = make(map[fileKey]*list.Element)
}

func (c *hashCache) get(k fileKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return "", false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*hashEntry).sum, true
}

func (c *hashCache) put(k fileKey, sum string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		return
	}
	c.m[k] = c.ll.PushFront(&hashEntry{key: k, sum: sum})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*hashEntry).key)
	}
}

func (c *hashCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
