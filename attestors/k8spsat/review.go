package k8spsat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// reviewTimeout bounds one TokenReview call.
const reviewTimeout = 10 * time.Second

// The "extra" keys the API server fills in for a projected token.
const (
	extraPodName  = "authentication.kubernetes.io/pod-name"
	extraPodUID   = "authentication.kubernetes.io/pod-uid"
	extraNodeName = "authentication.kubernetes.io/node-name"
	extraNodeUID  = "authentication.kubernetes.io/node-uid"
)

// TokenReviewer asks a cluster's API server about a token with the
// TokenReview API (authentication.k8s.io/v1), requesting the given
// audiences. Package k8spsat/tokenreview implements it for a kubeconfig or
// the in-cluster configuration; the verifier takes the interface so that
// the agent, which links this package for its collector, does not link the
// Kubernetes API types.
//
// Review returns an error only when it got no review (transport, HTTP
// status, undecodable answer); a review that rejects the token is a
// Review with Authenticated false or Error set.
type TokenReviewer interface {
	Review(ctx context.Context, token string, audiences []string) (Review, error)
}

// Review is the status of a TokenReview, in the API's own terms.
type Review struct {
	// Authenticated reports whether the API server accepted the token.
	Authenticated bool
	// Username, UID, Groups and Extra describe the token's subject; for a
	// projected service-account token Username is
	// "system:serviceaccount:<namespace>:<name>" and Extra carries the
	// pod and node it is bound to.
	Username string
	UID      string
	Groups   []string
	Extra    map[string][]string
	// Audiences are those of the requested audiences the token is valid
	// for; an API server that is not audience-aware leaves it empty.
	Audiences []string
	// Error is the API server's reason for a failed review.
	Error string
}

// NewTokenReviewerFunc builds the TokenReviewer of one cluster configured
// with kube_config_file or in_cluster. It reads its files now (a bad file
// stops start-up) and contacts no server.
type NewTokenReviewerFunc func(ClusterConfig) (TokenReviewer, error)

// WithTokenReviewers sets how NewVerifier builds the TokenReview client of
// each cluster configured with kube_config_file or in_cluster; NewVerifier
// requires it when there is such a cluster. The server passes
// tokenreview.ForCluster.
func WithTokenReviewers(f NewTokenReviewerFunc) Option {
	return optionFunc(func(o *options) { o.newReviewer = f })
}

// reviewValidator validates tokens with a cluster's TokenReview API.
type reviewValidator struct {
	r      TokenReviewer
	issuer string
}

func newReviewValidator(c *ClusterConfig, newReviewer NewTokenReviewerFunc) (*reviewValidator, error) {
	if newReviewer == nil {
		return nil, fmt.Errorf("k8spsat: cluster %q: kube_config_file and in_cluster need a TokenReview client (WithTokenReviewers)", c.Name)
	}
	r, err := newReviewer(*c)
	if err != nil {
		return nil, fmt.Errorf("k8spsat: cluster %q: %w", c.Name, err)
	}
	if r == nil {
		return nil, fmt.Errorf("k8spsat: cluster %q: no TokenReview client", c.Name)
	}
	return &reviewValidator{r: r, issuer: c.Issuer}, nil
}

func (v *reviewValidator) validate(ctx context.Context, token string, audiences []string) (identity, error) {
	if v.issuer != "" {
		// The API server checks the signature; this only makes sure the
		// token comes from the issuer the operator named.
		iss, err := jwtIssuer(token)
		if err != nil {
			return identity{}, err
		}
		if iss != v.issuer {
			return identity{}, fmt.Errorf("token issuer %q is not %q", truncate(iss), v.issuer)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	st, err := v.r.Review(ctx, token, audiences)
	if err != nil {
		return identity{}, err // prefixed by the reviewer's package
	}
	return identityFromReview(st, audiences)
}

// identityFromReview checks a review and reads the agent's pod from it:
// only from the review's user and extra fields, never from the token.
func identityFromReview(st Review, audiences []string) (identity, error) {
	if st.Error != "" {
		return identity{}, fmt.Errorf("token review: %s", truncate(st.Error))
	}
	if !st.Authenticated {
		return identity{}, errors.New("token review: token not authenticated")
	}
	if !intersects(st.Audiences, audiences) {
		return identity{}, fmt.Errorf("token review: token audiences %q do not include %q", st.Audiences, audiences)
	}
	ns, sa, ok := splitServiceAccount(st.Username)
	if !ok {
		return identity{}, fmt.Errorf("token review: user %q is not a service account", truncate(st.Username))
	}
	id := identity{Namespace: ns, ServiceAccount: sa}
	for _, f := range []struct {
		key string
		dst *string
	}{
		{extraPodName, &id.PodName}, {extraPodUID, &id.PodUID}, {extraNodeName, &id.NodeName}, {extraNodeUID, &id.NodeUID},
	} {
		v := st.Extra[f.key]
		if len(v) > 1 {
			return identity{}, fmt.Errorf("token review: %s has %d values", f.key, len(v))
		}
		if len(v) == 1 {
			*f.dst = v[0]
		}
	}
	return id, nil
}

// jwtIssuer reads the "iss" claim of a JWT without verifying it.
func jwtIssuer(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("token is not a JWT")
	}
	payload, err := base64URLDecode(parts[1])
	if err != nil {
		return "", fmt.Errorf("token payload: %w", err)
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", fmt.Errorf("token payload: %w", err)
	}
	return c.Iss, nil
}
