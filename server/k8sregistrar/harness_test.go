package k8sregistrar_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/hallmarkid/hallmark/internal/kubetest"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
	"github.com/hallmarkid/hallmark/server/k8sregistrar"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.Stop()
	os.Exit(code)
}

var td = spiffeid.RequireTrustDomainFromString("example.org")

// serverUser is the identity the registrar runs as in the tests: the
// server's service account, authorised only by the RBAC Hallmark ships.
const serverUser = "system:serviceaccount:hallmark:hallmark-server"

// env is one test's view of the shared API server.
type env struct {
	t     testing.TB
	c     *kubetest.Cluster
	kube  kubernetes.Interface
	dyn   dynamic.Interface
	store *countingStore
}

var setupOnce sync.Once

// newEnv starts (or reuses) the API server, installs the CRDs and the
// registrar RBAC once, and opens a fresh SQLite datastore.
func newEnv(t testing.TB) *env {
	t.Helper()
	c := kubetest.Start(t)
	setupOnce.Do(func() {
		c.MustCreate(t, "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": "hallmark"}})
		rbac, err := os.ReadFile("../../deploy/kubernetes/base/registrar-rbac.yaml")
		if err != nil {
			t.Fatal(err)
		}
		c.Apply(t, rbac)
		crds, _ := filepath.Glob("../../deploy/crds/*.yaml")
		if len(crds) != 3 {
			t.Fatalf("want 3 CRD manifests, found %v", crds)
		}
		for _, f := range crds {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			j, err := yaml.YAMLToJSON(b)
			if err != nil {
				t.Fatal(err)
			}
			c.MustCreate(t, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json.RawMessage(j))
		}
		for _, r := range []string{"clusterspiffeids", "clusterstaticentries", "clusterfederatedtrustdomains"} {
			waitFor(t, 20*time.Second, "CRD "+r+" served", func() bool {
				code, _, err := c.Do(context.Background(), http.MethodGet, "/apis/spire.spiffe.io/v1alpha1/"+r, nil)
				return err == nil && code == http.StatusOK
			})
		}
	})
	admin := restConfig(c, "admin")
	e := &env{t: t, c: c, kube: kubernetes.NewForConfigOrDie(admin), dyn: dynamic.NewForConfigOrDie(admin)}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ds.sqlite3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = &countingStore{Store: st}
	return e
}

func restConfig(c *kubetest.Cluster, user string) *rest.Config {
	return &rest.Config{Host: c.URL, BearerToken: kubetest.Token(user), QPS: 200, Burst: 400,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile}}
}

// countingStore is the real datastore, counting the registrar's writes
// and noting when each entry was first created.
type countingStore struct {
	datastore.Store
	writes  atomic.Int64
	mu      sync.Mutex
	created map[string]time.Time
}

func (s *countingStore) CreateEntries(ctx context.Context, es []registration.Entry) ([]datastore.CreateResult, error) {
	res, err := s.Store.CreateEntries(ctx, es)
	now := time.Now()
	s.mu.Lock()
	if s.created == nil {
		s.created = map[string]time.Time{}
	}
	for _, r := range res {
		if r.Err == nil {
			s.writes.Add(1)
			if _, ok := s.created[r.Entry.ID]; !ok {
				s.created[r.Entry.ID] = now
			}
		}
	}
	s.mu.Unlock()
	return res, err
}

func (s *countingStore) createdAt(id string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.created[id]
	return t, ok
}

func (s *countingStore) UpdateEntry(ctx context.Context, e registration.Entry) (registration.Entry, error) {
	s.writes.Add(1)
	return s.Store.UpdateEntry(ctx, e)
}

func (s *countingStore) DeleteEntry(ctx context.Context, id string) (registration.Entry, error) {
	s.writes.Add(1)
	return s.Store.DeleteEntry(ctx, id)
}

// registrar is a running Registrar.
type registrar struct {
	*k8sregistrar.Registrar
	stop func()
}

// start runs a registrar for cluster with class className over e's
// store, as the server's service account.
func (e *env) start(cfg k8sregistrar.Config) *registrar {
	e.t.Helper()
	cfg.TrustDomain = td
	if cfg.Store == nil {
		cfg.Store = e.store
	}
	cfg.Rest = restConfig(e.c, serverUser)
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 2*time.Second, 1500*time.Millisecond, 100*time.Millisecond
	}
	if cfg.IgnoreNamespaces == nil {
		cfg.IgnoreNamespaces = k8sregistrar.DefaultIgnoreNamespaces
	}
	r, err := k8sregistrar.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					e.t.Errorf("registrar: %v", err)
				}
			case <-time.After(10 * time.Second):
				e.t.Error("registrar did not stop")
			}
		})
	}
	e.t.Cleanup(stop)
	return &registrar{Registrar: r, stop: stop}
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// entries returns the stored entries under prefix, by ID.
func (e *env) entries(prefix string) map[string]registration.Entry {
	e.t.Helper()
	all, _, err := e.store.ListEntries(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]registration.Entry{}
	for _, en := range all {
		if len(en.ID) >= len(prefix) && en.ID[:len(prefix)] == prefix {
			out[en.ID] = en
		}
	}
	return out
}

func (e *env) namespace(name string, labels map[string]string) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = e.kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

func (e *env) serviceAccount(ns, name string) {
	e.t.Helper()
	if _, err := e.kube.CoreV1().ServiceAccounts(ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) node(name string) *corev1.Node {
	e.t.Helper()
	n, err := e.kube.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = e.kube.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return n
}

// pod creates a pod already bound to node (there is no scheduler) and
// marks it Running through the status subresource (there is no kubelet).
func (e *env) pod(ns, name, sa, node string, labels map[string]string) *corev1.Pod {
	e.t.Helper()
	ctx := context.Background()
	f := false
	p, err := e.kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: sa, AutomountServiceAccountToken: &f,
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	if p, err = e.kube.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) deletePod(ns, name string) {
	e.t.Helper()
	zero := int64(0)
	if err := e.kube.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		e.t.Fatal(err)
	}
}

// apply creates a custom object from YAML (cluster-scoped).
func (e *env) apply(resource string, doc string) {
	e.t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
		e.t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	gvr := map[string]k8sregistrarGVR{"csid": k8sregistrar.ClusterSPIFFEIDs, "cse": k8sregistrar.ClusterStaticEntries,
		"cftd": k8sregistrar.ClusterFederatedTrustDomains}[resource]
	if _, err := e.dyn.Resource(gvr).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.dyn.Resource(gvr).Delete(context.Background(), u.GetName(), metav1.DeleteOptions{})
	})
}

// status returns the status of a custom object.
func (e *env) status(gvr k8sregistrarGVR, name string, out any) {
	e.t.Helper()
	u, err := e.dyn.Resource(gvr).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := json.Marshal(u.Object["status"])
	if err := json.Unmarshal(b, out); err != nil {
		e.t.Fatal(err)
	}
}

type k8sregistrarGVR = schema.GroupVersionResource
