package unix

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hallmarkid/hallmark/registration"
)

// Name is the selector type this attestor produces.
const Name = "unix"

// Config configures an Attestor.
type Config struct {
	// ProcDir is where procfs is mounted, "/proc" if empty. PIDs given to
	// Attest are in the PID namespace of this procfs.
	ProcDir string
	// DiscoverWorkloadPath adds path: (the executable's path as the kernel
	// reports it) and, with WorkloadSizeLimit, sha256: selectors.
	DiscoverWorkloadPath bool
	// WorkloadSizeLimit is the largest executable, in bytes, that is hashed
	// for a sha256: selector: 0 hashes nothing, -1 hashes any size. A larger
	// executable gets no sha256: selector (logged), not an error.
	WorkloadSizeLimit int64
	// Log receives warnings; nil discards them.
	Log *slog.Logger
}

// Attestor is the unix workload attestor. It is safe for concurrent use.
type Attestor struct {
	procDir   string
	path      bool
	sizeLimit int64
	log       *slog.Logger

	names  nameCache
	hashes hashCache

	hashCount atomic.Int64 // executables hashed, for tests
}

// Validate reports whether cfg is usable; configuration loaders should call
// it so that a bad value stops start-up.
func (cfg Config) Validate() error {
	if cfg.WorkloadSizeLimit < -1 {
		return fmt.Errorf("unix: workload size limit %d: want -1 (no limit), 0 (no hashing) or a size in bytes", cfg.WorkloadSizeLimit)
	}
	return nil
}

// New returns an Attestor. A WorkloadSizeLimit below -1, which Validate
// rejects, hashes nothing.
func New(cfg Config) *Attestor {
	a := &Attestor{
		procDir:   cfg.ProcDir,
		path:      cfg.DiscoverWorkloadPath,
		sizeLimit: cfg.WorkloadSizeLimit,
		log:       cfg.Log,
	}
	if a.procDir == "" {
		a.procDir = "/proc"
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.sizeLimit < -1 {
		a.sizeLimit = 0
	}
	a.names.init()
	a.hashes.init(hashCacheSize)
	return a
}

// Name returns "unix".
func (a *Attestor) Name() string { return Name }

// Local reports that the attestor only reads /proc and never blocks, so the
// agent runs it without a per-call deadline.
func (a *Attestor) Local() bool { return true }

// Attest returns the selectors of process pid. A process that does not
// exist, or whose status cannot be read and parsed, is an error.
func (a *Attestor) Attest(ctx context.Context, pid int32) ([]registration.Selector, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("unix: attest pid %d: %w", pid, err)
	}
	if pid <= 0 {
		return nil, fmt.Errorf("unix: attest: invalid pid %d", pid)
	}
	dir := a.procDir + "/" + strconv.FormatInt(int64(pid), 10)
	st, err := readStatus(dir + "/status")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("unix: attest pid %d: no such process", pid)
	}
	if err != nil {
		return nil, fmt.Errorf("unix: attest pid %d: %w", pid, err)
	}

	sels := make([]registration.Selector, 0, 6+2*len(st.Groups))
	add := func(kind, value string) {
		sels = append(sels, registration.Selector{Type: Name, Value: kind + ":" + value})
	}
	add("uid", strconv.FormatUint(uint64(st.UID), 10))
	if name, ok := a.names.lookup(false, st.UID, a.log); ok {
		add("user", name)
	}
	add("gid", strconv.FormatUint(uint64(st.GID), 10))
	if name, ok := a.names.lookup(true, st.GID, a.log); ok {
		add("group", name)
	}
	seen := make(map[uint32]bool, len(st.Groups))
	for _, g := range st.Groups {
		if seen[g] {
			continue
		}
		seen[g] = true
		add("supplementary_gid", strconv.FormatUint(uint64(g), 10))
		if name, ok := a.names.lookup(true, g, a.log); ok {
			add("supplementary_group", name)
		}
	}

	if a.path {
		exe, err := a.executable(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("unix: attest pid %d: %w", pid, err)
		}
		if len(Name)+len("path:")+len(exe.path) > registration.MaxSelectorLen {
			a.log.Warn("unix: executable path too long for a selector", "pid", pid, "len", len(exe.path))
		} else {
			add("path", exe.path)
		}
		if exe.sha256 != "" {
			add("sha256", exe.sha256)
		}
	}
	return sels, nil
}

// Fingerprint returns what the selectors of pid depend on besides its
// credentials (which agent/peercred re-checks on every call) and user and
// group names (which age within ReuseFor): with DiscoverWorkloadPath, the
// executable's path as the kernel reports it (a rename, or " (deleted)"
// once the file is replaced) and, when hashing, the version of the file
// (device, inode, size, modification and change times); otherwise nothing.
// agent/workloadattest reuses a connection's attestation while it is
// unchanged.
func (a *Attestor) Fingerprint(_ context.Context, pid int32) (string, error) {
	if !a.path {
		return "", nil
	}
	if pid <= 0 {
		return "", fmt.Errorf("unix: fingerprint: invalid pid %d", pid)
	}
	link := a.procDir + "/" + strconv.FormatInt(int64(pid), 10) + "/exe"
	path, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("unix: fingerprint pid %d: %w", pid, err)
	}
	if a.sizeLimit == 0 {
		return path, nil
	}
	var st syscall.Stat_t
	if err := syscall.Stat(link, &st); err != nil {
		return "", fmt.Errorf("unix: fingerprint pid %d: %w", pid, err)
	}
	return fmt.Sprintf("%s\x00%+v", path, keyOf(&st)), nil
}

// ReuseFor is how long agent/workloadattest may reuse an attestation with
// an unchanged fingerprint: as long as a user or group name is cached.
func (a *Attestor) ReuseFor() time.Duration { return nameTTL }
