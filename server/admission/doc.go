// Package admission guards the Node API's unauthenticated path: what
// anyone who can reach the server's port can make it hold before any
// identity is proven.
//
// A Gate takes the TCP listener, completes each TLS handshake itself
// (bounded in time, per source and in total) and hands the connection to
// one of two gRPC servers: connections that presented an agent SVID go to
// the authenticated server (large messages, many streams), all others to
// the unauthenticated one, which serves Attest alone with a small message
// limit, one stream per connection, short idle and age bounds, a bound on
// attestations in flight and a per-source token bucket. gRPC applies its
// message limit to a message's length prefix, before reading the body, so
// an oversized message is refused without being buffered.
//
// It knows the Node API only by the full name of its Attest method and
// must not import nodeapi, the datastore or cmd/.
package admission
