package bundlepub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hallmarkid/hallmark/internal/kubeapi"
)

// maxConfigMapSize bounds an API server answer about the ConfigMap.
const maxConfigMapSize = 4 << 20

// ConfigMap publishes the bundle under one key of a Kubernetes ConfigMap
// (the behaviour of SPIRE's k8sbundle notifier): it reads the ConfigMap,
// and when the key's value differs patches it with the resourceVersion it
// read (so a concurrent writer makes the API server answer 409 and the
// publisher reads again), or creates the ConfigMap when it does not exist.
// Other keys, labels and annotations are left alone.
type ConfigMap struct {
	API       *kubeapi.Client
	Namespace string
	Name      string
	Key       string
}

func (c *ConfigMap) String() string {
	return "k8s_configmap " + c.Namespace + "/" + c.Name + " key " + c.Key
}

func (c *ConfigMap) path() string {
	return "/api/v1/namespaces/" + url.PathEscape(c.Namespace) + "/configmaps"
}

// Publish implements Target.
func (c *ConfigMap) Publish(ctx context.Context, content []byte) (bool, error) {
	// A few rounds: each conflict means someone else wrote meanwhile
	// (another server publishing the same bundle, most likely).
	for range 4 {
		wrote, retry, err := c.publish(ctx, string(content))
		if !retry {
			return wrote, err
		}
	}
	return false, fmt.Errorf("bundlepub: %s: still conflicting after 4 attempts", c)
}

func (c *ConfigMap) publish(ctx context.Context, content string) (wrote, retry bool, err error) {
	code, body, err := c.call(ctx, http.MethodGet, c.path()+"/"+url.PathEscape(c.Name), "", nil)
	if err != nil {
		return false, false, err
	}
	switch code {
	case http.StatusNotFound:
		cm := corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: c.Namespace},
			Data:       map[string]string{c.Key: content},
		}
		code, body, err = c.call(ctx, http.MethodPost, c.path(), "application/json", cm)
		switch {
		case err != nil:
			return false, false, err
		case code == http.StatusConflict: // created meanwhile
			return false, true, nil
		case code != http.StatusCreated && code != http.StatusOK:
			return false, false, c.apiError("create", code, body)
		}
		return true, false, nil
	case http.StatusOK:
	default:
		return false, false, c.apiError("get", code, body)
	}
	value, has, rv, err := decodeConfigMap(body, c.Key)
	if err != nil {
		return false, false, fmt.Errorf("bundlepub: %s: %w", c, err)
	}
	if has && value == content {
		return false, false, nil
	}
	patch := map[string]any{
		"metadata": map[string]any{"resourceVersion": rv},
		"data":     map[string]string{c.Key: content},
	}
	code, body, err = c.call(ctx, http.MethodPatch, c.path()+"/"+url.PathEscape(c.Name), "application/merge-patch+json", patch)
	switch {
	case err != nil:
		return false, false, err
	case code == http.StatusConflict:
		return false, true, nil
	case code != http.StatusOK:
		return false, false, c.apiError("patch", code, body)
	}
	return true, false, nil
}

func (c *ConfigMap) call(ctx context.Context, method, path, contentType string, v any) (int, []byte, error) {
	var rd *bytes.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, nil, fmt.Errorf("bundlepub: %s: %w", c, err)
		}
		rd = bytes.NewReader(b)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = c.API.NewRequest(ctx, method, path, rd)
	} else {
		req, err = c.API.NewRequest(ctx, method, path, nil)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("bundlepub: %s: %w", c, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	code, body, err := c.API.Do(req, maxConfigMapSize)
	if err != nil {
		return 0, nil, fmt.Errorf("bundlepub: %s: %w", c, err)
	}
	return code, body, nil
}

// apiError names the verb, the status and the API server's message (a
// metav1.Status), e.g. a missing RBAC permission.
func (c *ConfigMap) apiError(verb string, code int, body []byte) error {
	var st metav1.Status
	msg := http.StatusText(code)
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		msg = st.Message
	}
	return fmt.Errorf("bundlepub: %s: %s: %d %s", c, verb, code, msg)
}

// decodeConfigMap decodes an API server's ConfigMap answer (at most
// maxConfigMapSize bytes) into the value of key, whether it is present, and
// the resourceVersion (required: the patch is conditional on it).
func decodeConfigMap(body []byte, key string) (value string, has bool, resourceVersion string, err error) {
	var cm corev1.ConfigMap
	if err := json.Unmarshal(body, &cm); err != nil {
		return "", false, "", fmt.Errorf("decode: %w", err)
	}
	if cm.ResourceVersion == "" {
		return "", false, "", fmt.Errorf("decode: the ConfigMap has no resourceVersion")
	}
	value, has = cm.Data[key]
	return value, has, cm.ResourceVersion, nil
}
