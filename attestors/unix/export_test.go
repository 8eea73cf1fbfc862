package unix

// ParseStatus exposes parseStatus: effective uid and gid and supplementary
// groups.
func ParseStatus(b []byte) (uid, gid uint32, groups []uint32, err error) {
	st, err := parseStatus(b)
	return st.UID, st.GID, st.Groups, err
}

// Hashes returns how many executables a has hashed.
func Hashes(a *Attestor) int64 { return a.hashCount.Load() }

// CachedHashes returns the number of entries in a's hash cache.
func CachedHashes(a *Attestor) int { return a.hashes.len() }

// SetHashCacheSize empties a's hash cache and bounds it to n entries.
func SetHashCacheSize(a *Attestor, n int) { a.hashes.init(n) }
