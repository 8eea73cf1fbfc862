// Package bundlepub publishes the server's own trust bundle (its X.509
// authorities) where new agents read it to bootstrap: a file, a Kubernetes
// ConfigMap, an AWS SSM parameter. It publishes at start and on every
// bundle change (authority prepared, activated, tainted, revoked or
// expired), and again every resync interval so that a target someone
// edited or deleted is repaired.
//
// Every target is read first and written only when its content differs,
// so several servers sharing one datastore (HA) may all publish to the
// same place: they converge on the shared CA state and do not rewrite an
// unchanged value. Certificates are sorted (NotBefore, then DER) so that
// servers agreeing on the authorities produce the same bytes.
//
// It must not import server/ packages other than config types, nor
// agent/.
package bundlepub
