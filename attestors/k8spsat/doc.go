// Package k8spsat is the "k8s_psat" node attestor: a Kubernetes projected
// service-account token (PSAT) presented by an agent pod. The agent half
// (Collector) reads the token the kubelet projects into the pod; the server
// half (Verifier) validates it through the cluster's TokenReview API or
// offline against the cluster's OIDC issuer keys (JWKS), checks audience,
// expiry, issuer and a service-account allow-list, and derives the agent
// ID spiffe://<td>/agent/k8s_psat/<cluster>/<node UID, else pod UID>.
//
// It talks to the API server over plain HTTPS with k8s.io/api types; it
// must not import client-go, agent/, server/ or other attestors.
package k8spsat
