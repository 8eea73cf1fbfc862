// Package tokenreview is the TokenReview client of the k8s_psat verifier:
// a [k8spsat.TokenReviewer] that posts authentication.k8s.io/v1
// TokenReviews (k8s.io/api types) over verified HTTPS (internal/kubeapi)
// to the API server named by a kubeconfig (token, token file or client certificate; no exec
// plugins, no insecure-skip-tls-verify) or by the pod's in-cluster
// environment. It lives apart from package k8spsat so that only the
// server, which wires it in with k8spsat.WithTokenReviewers(ForCluster),
// links the Kubernetes API modules and sigs.k8s.io/yaml.
//
// It must not import client-go, server/, agent/ or any attestor other than
// k8spsat.
package tokenreview
