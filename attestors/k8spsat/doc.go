// Package k8spsat is the "k8s_psat" node attestor: a Kubernetes projected
// service-account token (PSAT) presented by an agent pod. The agent half
// (Collector) reads the token the kubelet projects into the pod; the server
// half (Verifier) validates it through the cluster's TokenReview API or
// offline against the cluster's OIDC issuer keys (JWKS), checks audience
// (by default the server's SPIFFE ID, so tokens projected for another
// deployment are refused), expiry, issuer and a service-account
// allow-list, and derives the agent ID
// spiffe://<td>/agent/k8s_psat/<cluster>/<node UID, else pod UID>.
//
// Offline validation (go-jose) lives here. TokenReview goes through a
// [TokenReviewer], an interface this package declares with its own
// [Review] result; subpackage tokenreview implements it with the
// k8s.io/api types and reads kubeconfig and in-cluster credentials, and the
// server passes it in with [WithTokenReviewers]. So the agent, which links
// this package for its collector, links no Kubernetes module.
//
// It must not import k8s.io/..., sigs.k8s.io/..., client-go, its own
// subpackages, agent/, server/ or other attestors (TestNoKubernetesModules
// checks the first two).
package k8spsat
