// Package k8spsattest is test support for the k8s_psat node attestor,
// importable from any package's tests (the end-to-end tests in test/
// among them): the strict loopback TokenReview API server of
// k8spsat/internal/fakeapi, a kubeconfig for it, and a loopback
// service-account issuer that serves its JWKS over HTTPS and mints
// projected tokens with the claims a kubelet's tokens carry.
//
// Production code must not import it. It must not import agent/, server/
// or other attestors.
package k8spsattest
