package tokenreview

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/internal/kubeapi"
)

const (
	tokenReviewPath = "/apis/authentication.k8s.io/v1/tokenreviews"
	// MaxReviewSize bounds the API server's answer.
	MaxReviewSize = 1 << 20
)

// Config selects the API server and the credentials to call it with:
// exactly one of KubeConfigFile and InCluster (see internal/kubeapi: a
// kubeconfig's user may hold a token, a token file or a client
// certificate; exec plugins, auth-provider and insecure-skip-tls-verify
// are refused, and the server must be an https URL).
type Config = kubeapi.Config

// Client calls the TokenReview API of one cluster. It is safe for
// concurrent use.
type Client struct {
	api *kubeapi.Client
}

var _ k8spsat.TokenReviewer = (*Client)(nil)

// New reads c's kubeconfig or in-cluster files (token files are read
// again for every call, as the kubelet rotates them) and returns a
// client. It contacts no server.
func New(c Config) (*Client, error) {
	api, err := kubeapi.New(c)
	if err != nil {
		return nil, fmt.Errorf("tokenreview: %w", err)
	}
	return &Client{api: api}, nil
}

// ForCluster builds the client of a k8s_psat cluster block from its
// kube_config_file or in_cluster setting; pass it to
// k8spsat.WithTokenReviewers.
func ForCluster(c k8spsat.ClusterConfig) (k8spsat.TokenReviewer, error) {
	cl, err := New(Config{KubeConfigFile: c.KubeConfigFile, InCluster: c.InCluster})
	if err != nil {
		return nil, err
	}
	return cl, nil
}

// Review posts a TokenReview of token for audiences and returns its
// status. An error means there is no review: the call failed, the API
// server answered other than 200 or 201, or the answer did not decode.
func (c *Client) Review(ctx context.Context, token string, audiences []string) (k8spsat.Review, error) {
	body, err := json.Marshal(&authv1.TokenReview{
		TypeMeta: metav1.TypeMeta{Kind: "TokenReview", APIVersion: "authentication.k8s.io/v1"},
		Spec:     authv1.TokenReviewSpec{Token: token, Audiences: audiences},
	})
	if err != nil {
		return k8spsat.Review{}, fmt.Errorf("tokenreview: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, kubeapi.RequestTimeout)
	defer cancel()
	req, err := c.api.NewRequest(ctx, http.MethodPost, tokenReviewPath, bytes.NewReader(body))
	if err != nil {
		return k8spsat.Review{}, fmt.Errorf("tokenreview: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	code, data, err := c.api.Do(req, MaxReviewSize)
	if err != nil {
		return k8spsat.Review{}, fmt.Errorf("tokenreview: %w", err)
	}
	if code != http.StatusCreated && code != http.StatusOK {
		return k8spsat.Review{}, fmt.Errorf("tokenreview: %d %s", code, http.StatusText(code))
	}
	return decodeReview(data)
}

// decodeReview decodes a TokenReview answer (JSON, at most MaxReviewSize
// bytes) into its status.
func decodeReview(data []byte) (k8spsat.Review, error) {
	if len(data) > MaxReviewSize {
		return k8spsat.Review{}, fmt.Errorf("tokenreview: answer larger than %d bytes", MaxReviewSize)
	}
	var tr authv1.TokenReview
	if err := json.Unmarshal(data, &tr); err != nil {
		return k8spsat.Review{}, fmt.Errorf("tokenreview: answer: %w", err)
	}
	st := tr.Status
	r := k8spsat.Review{
		Authenticated: st.Authenticated,
		Username:      st.User.Username,
		UID:           st.User.UID,
		Groups:        st.User.Groups,
		Audiences:     st.Audiences,
		Error:         st.Error,
	}
	if len(st.User.Extra) > 0 {
		r.Extra = make(map[string][]string, len(st.User.Extra))
		for k, v := range st.User.Extra {
			r.Extra[k] = []string(v)
		}
	}
	return r, nil
}
