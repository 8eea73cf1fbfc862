package agent

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// attestingErr is Ready's answer while the agent has no SVID yet: that it
// is attesting, and how the last attempt failed.
func (a *Agent) attestingErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.attesting == "" {
		return fmt.Errorf("attesting to the server at %s", a.cfg.ServerAddress)
	}
	return errors.New(a.attesting)
}

// setAttesting records a failed attestation attempt for Ready.
func (a *Agent) setAttesting(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.attesting = fmt.Sprintf("attesting to the server at %s: last attempt failed: %v", a.cfg.ServerAddress, err)
}

// errStaleBundle marks TLS failures explained by explainTLS.
var errStaleBundle = errors.New("the server's certificate is not signed by any authority in the agent's trust bundle")

// explainTLS names the likely cause when err says the server's
// certificate chains to an unknown authority: the trust bundle the agent
// started with (trust_bundle_path, or the one saved in data_dir) is stale
// or belongs to another server. Other errors are returned unchanged.
func (a *Agent) explainTLS(err error) error {
	var ua x509.UnknownAuthorityError
	if err == nil || !(errors.As(err, &ua) || strings.Contains(err.Error(), "certificate signed by unknown authority")) {
		return err
	}
	from := a.bundleFrom
	if from == "" {
		from = "its trust bundle"
	}
	return fmt.Errorf("%w (%s): it is probably stale, or from another server or trust domain; "+
		"write the current one with `hallmark-server bundle show` to trust_bundle_path (and remove data_dir's bundle.pem if it is the stale one): %v",
		errStaleBundle, from, err)
}
