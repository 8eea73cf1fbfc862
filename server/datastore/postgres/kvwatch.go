package postgres

import (
	"context"
	"strconv"
	"strings"
)

// maxNotifiedKey bounds the keys a KV notification names (in bytes): a
// NOTIFY payload must stay under 8,000 bytes, and the keys the server
// writes are a few dozen. A longer key is announced as "*" ("some key"),
// so that a write never fails for its notification.
const maxNotifiedKey = 1000

// kvNotify is the SQL expression (over the written row's key) that
// announces a KV write: payload "=" and the key, or "*".
var kvNotify = `pg_notify('` + KVChannel + `', CASE WHEN octet_length(key) <= ` + strconv.Itoa(maxNotifiedKey) +
	` THEN '=' || key ELSE '*' END)`

// WatchKV calls fn with the key of each KV write committed by this or
// another server sharing the database (PutKV, and SwapKV when it swapped),
// and with "" after each (re)connection — the first call is that "" — and
// for a write whose key it cannot name (longer than 1,000 bytes, or a
// payload it does not understand): "any key may have changed, re-read
// what you follow". Same connection handling as WatchEntryChanges, on its
// own connection; fn runs on the calling goroutine, one call at a time.
func (s *Store) WatchKV(ctx context.Context, fn func(key string)) error {
	return s.watch(ctx, KVChannel, "KV change", func(payload string) { fn(kvKeyOf(payload)) })
}

// kvKeyOf returns the key a KVChannel payload names, or "" (any key) for
// "*", "" and anything it does not understand: a notification is never
// dropped, at worst it costs a re-read.
func kvKeyOf(payload string) string {
	key, ok := strings.CutPrefix(payload, "=")
	if !ok || len(key) > maxNotifiedKey {
		return ""
	}
	return key
}
