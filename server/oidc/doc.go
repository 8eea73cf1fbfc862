// Package oidc serves the trust domain's JWT signing keys the way OIDC
// relying parties (AWS IAM OIDC providers, GCP workload identity
// federation, Vault's JWT auth) expect them: an OpenID discovery document
// at <issuer>/.well-known/openid-configuration and a JWKS at
// <issuer>/keys. Tokens must then carry the same issuer in "iss"
// (jwtsigner.Config.Issuer). Handler is the bare HTTP handler; Endpoint
// runs it on a listener of its own (the server's oidc block), over HTTPS
// with certificate files, or plain HTTP on loopback behind a TLS proxy,
// answering only for the configured host names.
//
// It only publishes public keys; it must not import the signer's private
// key material, the datastore or the API layer.
package oidc
