package tokenreview

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hallmarkid/hallmark/attestors/k8spsat"
)

const (
	tokenReviewPath = "/apis/authentication.k8s.io/v1/tokenreviews"
	// MaxReviewSize bounds the API server's answer.
	MaxReviewSize = 1 << 20
	// requestTimeout bounds one call, connection included.
	requestTimeout = 10 * time.Second
)

// Config selects the API server and the credentials to call it with:
// exactly one of KubeConfigFile and InCluster.
type Config struct {
	// KubeConfigFile names a kubeconfig; its current context (or its only
	// context) selects the server and the user. The user may hold a
	// token, a token file or a client certificate; exec plugins,
	// auth-provider and insecure-skip-tls-verify are refused, and the
	// server must be an https URL.
	KubeConfigFile string
	// InCluster uses the pod's own environment: KUBERNETES_SERVICE_HOST
	// and _PORT, and the service-account token and CA mounted at
	// /var/run/secrets/kubernetes.io/serviceaccount.
	InCluster bool
}

// Client calls the TokenReview API of one cluster. It is safe for
// concurrent use.
type Client struct {
	url    string
	client *http.Client
	bearer func() (string, error) // nil for client-certificate auth
}

var _ k8spsat.TokenReviewer = (*Client)(nil)

// New reads c's kubeconfig or in-cluster files (token files are read
// again for every call, as the kubelet rotates them) and returns a
// client. It contacts no server.
func New(c Config) (*Client, error) {
	var (
		cl  *Client
		err error
	)
	switch {
	case c.InCluster && c.KubeConfigFile != "":
		return nil, errors.New("tokenreview: set one of kube_config_file and in_cluster, not both")
	case c.InCluster:
		cl, err = inCluster()
	case c.KubeConfigFile != "":
		cl, err = fromKubeconfig(c.KubeConfigFile)
	default:
		return nil, errors.New("tokenreview: neither kube_config_file nor in_cluster is set")
	}
	if err != nil {
		return nil, fmt.Errorf("tokenreview: %w", err)
	}
	return cl, nil
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
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return k8spsat.Review{}, fmt.Errorf("tokenreview: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.bearer != nil {
		b, err := c.bearer()
		if err != nil {
			return k8spsat.Review{}, fmt.Errorf("tokenreview: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+b)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return k8spsat.Review{}, fmt.Errorf("tokenreview: %w", err)
	}
	defer resp.Body.Close()
	data, err := readAllLimited(resp.Body, MaxReviewSize)
	if err != nil {
		return k8spsat.Review{}, fmt.Errorf("tokenreview: answer: %w", err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return k8spsat.Review{}, fmt.Errorf("tokenreview: %s", resp.Status)
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

func readAllLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}
