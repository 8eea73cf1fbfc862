package k8sregistrar

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// Queue keys: keyAll recomputes everything, keyStatus writes the CRDs'
// status, podPrefix+"ns/name" recomputes one pod's entries.
const (
	keyAll    = "all"
	keyStatus = "status"
	podPrefix = "pod:"
	// byPod indexes endpoint slices by the pods their endpoints name.
	byPod = "pod"
	// statusDelay coalesces status writes after a burst of changes.
	statusDelay = 500 * time.Millisecond
)

// Registrar watches the cluster and, while it holds the Lease, keeps its
// entries converged.
type Registrar struct {
	cfg  Config
	log  *slog.Logger
	kube kubernetes.Interface
	dyn  dynamic.Interface

	factory  informers.SharedInformerFactory
	dfactory dynamicinformer.DynamicSharedInformerFactory
	pods     corelisters.PodLister
	nodes    corelisters.NodeLister
	nss      corelisters.NamespaceLister
	slices   cache.Indexer
	csids    cache.GenericLister
	cses     cache.GenericLister
	cftds    cache.GenericLister

	builtin *spec // the built-in default ClusterSPIFFEID; nil unless configured

	queue   atomic.Pointer[workqueue.TypedRateLimitingInterface[string]] // nil unless leading
	leading atomic.Bool
	writes  atomic.Int64

	// st is the leader's state; only the worker goroutine touches it.
	st *state
}

// klogOnce guards the process-wide klog logger (see New).
var klogOnce sync.Once

// New builds a registrar; nothing is watched until Run.
func New(cfg Config) (*Registrar, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	rc := rest.CopyConfig(cfg.Rest)
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 50, 100
	}
	rc.UserAgent = "hallmark-server/k8s-registrar"
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("k8sregistrar: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("k8sregistrar: %w", err)
	}
	// client-go logs (leader election, watch errors) through cfg.Log.
	// klog's logger is process-wide and read unlocked by running
	// informers: set it once, by the first registrar of the process
	// (a server runs one; tests run several side by side).
	klogOnce.Do(func() { klog.SetSlogLogger(cfg.Log.With("component", "client-go")) })
	r := &Registrar{cfg: cfg, log: cfg.Log, kube: kube, dyn: dyn}
	if cfg.DefaultClusterSPIFFEID {
		r.builtin = builtinSpec(cfg.TrustDomain)
	}
	// No resync period: every change arrives as a watch event.
	r.factory = informers.NewSharedInformerFactory(kube, 0)
	r.dfactory = dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	r.pods = r.factory.Core().V1().Pods().Lister()
	r.nodes = r.factory.Core().V1().Nodes().Lister()
	r.nss = r.factory.Core().V1().Namespaces().Lister()
	sliceInf := r.factory.Discovery().V1().EndpointSlices().Informer()
	if err := sliceInf.AddIndexers(cache.Indexers{byPod: slicePods}); err != nil {
		return nil, fmt.Errorf("k8sregistrar: %w", err)
	}
	r.slices = sliceInf.GetIndexer()
	r.csids = r.dfactory.ForResource(ClusterSPIFFEIDs).Lister()
	r.cses = r.dfactory.ForResource(ClusterStaticEntries).Lister()
	r.cftds = r.dfactory.ForResource(ClusterFederatedTrustDomains).Lister()

	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{r.factory.Core().V1().Pods().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: r.podChanged, UpdateFunc: func(_, n any) { r.podChanged(n) }, DeleteFunc: r.podChanged}},
		{r.factory.Core().V1().Nodes().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: r.all, DeleteFunc: r.all, UpdateFunc: r.nodeUpdated}},
		{r.factory.Core().V1().Namespaces().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: r.all, DeleteFunc: r.all, UpdateFunc: r.namespaceUpdated}},
		{sliceInf, cache.ResourceEventHandlerFuncs{
			AddFunc: r.sliceChanged, DeleteFunc: r.sliceChanged,
			UpdateFunc: func(o, n any) { r.sliceChanged(o); r.sliceChanged(n) }}},
		{r.dfactory.ForResource(ClusterSPIFFEIDs).Informer(), specHandler(r.all)},
		{r.dfactory.ForResource(ClusterStaticEntries).Informer(), specHandler(r.all)},
		{r.dfactory.ForResource(ClusterFederatedTrustDomains).Informer(), specHandler(r.status)},
	}
	for _, h := range handlers {
		// Managed fields are bookkeeping of the API server, often larger
		// than the rest of the object: not kept in the caches.
		if err := h.inf.SetTransform(dropManagedFields); err != nil {
			return nil, fmt.Errorf("k8sregistrar: %w", err)
		}
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("k8sregistrar: %w", err)
		}
	}
	return r, nil
}

func dropManagedFields(obj any) (any, error) {
	if m, err := apimeta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// specHandler reacts to changes of a CRD object's spec and metadata, not
// to the status writes the registrar itself makes.
func specHandler(fn func(any)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{AddFunc: fn, DeleteFunc: fn, UpdateFunc: func(o, n any) {
		if metaOf(o).GetGeneration() != metaOf(n).GetGeneration() ||
			!equality.Semantic.DeepEqual(metaOf(o).GetLabels(), metaOf(n).GetLabels()) {
			fn(n)
		}
	}}
}

func metaOf(obj any) metav1.Object {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, err := apimeta.Accessor(obj)
	if err != nil {
		return &metav1.ObjectMeta{}
	}
	return m
}

// Writes returns the number of datastore writes (entries created, updated
// or deleted) this registrar has made.
func (r *Registrar) Writes() int64 { return r.writes.Load() }

// Leading reports whether this registrar holds the Lease.
func (r *Registrar) Leading() bool { return r.leading.Load() }

// Run watches the cluster and campaigns for the Lease until ctx is done;
// while it leads, it reconciles. It returns ctx's error, or an error if
// the caches never sync.
func (r *Registrar) Run(ctx context.Context) error {
	r.factory.Start(ctx.Done())
	r.dfactory.Start(ctx.Done())
	defer r.factory.Shutdown()
	defer r.dfactory.Shutdown()
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: r.cfg.LeaseNamespace, Name: r.cfg.LeaseName},
		Client:     r.kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: r.cfg.Identity},
	}
	for ctx.Err() == nil {
		var wg sync.WaitGroup
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: r.cfg.LeaseName, ReleaseOnCancel: true,
			LeaseDuration: r.cfg.LeaseDuration, RenewDeadline: r.cfg.RenewDeadline, RetryPeriod: r.cfg.RetryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					wg.Add(1)
					defer wg.Done()
					r.lead(lctx)
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return fmt.Errorf("k8sregistrar: %w", err)
		}
		le.Run(ctx)
		wg.Wait() // the term's worker has stopped writing before another term begins
	}
	return ctx.Err()
}

// lead reconciles until lctx ends (leadership lost or shutdown).
func (r *Registrar) lead(lctx context.Context) {
	r.log.Info("Registrar leading: reconciling entries", "identity", r.cfg.Identity, "cluster", r.cfg.Cluster)
	// A missing CRD or RBAC rule leaves a cache unsynced forever: say so.
	synced := make(chan struct{})
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-synced:
				return
			case <-lctx.Done():
				return
			case <-t.C:
				r.log.Error("Registrar: Kubernetes caches not synced yet: are the CRDs of deploy/crds installed and the RBAC of deploy/kubernetes/base/registrar-rbac.yaml bound?")
			}
		}
	}()
	for _, ok := range r.factory.WaitForCacheSync(lctx.Done()) {
		if !ok {
			return
		}
	}
	for _, ok := range r.dfactory.WaitForCacheSync(lctx.Done()) {
		if !ok {
			return
		}
	}
	close(synced) // (an early return above means lctx is done)
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "hallmark-registrar"})
	r.queue.Store(&q)
	r.leading.Store(true)
	defer func() {
		r.leading.Store(false)
		r.queue.Store(nil)
		q.ShutDown()
		r.log.Info("Registrar no longer leading", "identity", r.cfg.Identity)
	}()
	go func() {
		<-lctx.Done()
		q.ShutDown()
	}()
	r.st = newState()
	q.Add(keyAll)
	for {
		key, quit := q.Get()
		if quit {
			return
		}
		err := r.process(lctx, key)
		q.Done(key)
		switch {
		case err == nil:
			q.Forget(key)
		case lctx.Err() != nil:
			return
		default:
			r.log.Warn("Registrar: reconcile failed; retrying", "key", key, "error", err)
			q.AddRateLimited(key)
		}
	}
}

func (r *Registrar) enqueue(key string) {
	if q := r.queue.Load(); q != nil {
		(*q).Add(key)
	}
}

func (r *Registrar) all(any)    { r.enqueue(keyAll) }
func (r *Registrar) status(any) { r.enqueue(keyStatus) }

func (r *Registrar) podChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		r.enqueue(podPrefix + d.Key)
		return
	}
	if p, ok := obj.(*corev1.Pod); ok {
		r.enqueue(podPrefix + p.Namespace + "/" + p.Name)
	}
}

// nodeUpdated ignores status-only updates (heartbeats): templates see the
// node's metadata and spec only.
func (r *Registrar) nodeUpdated(o, n any) {
	on, ok1 := o.(*corev1.Node)
	nn, ok2 := n.(*corev1.Node)
	if ok1 && ok2 && on.UID == nn.UID && equality.Semantic.DeepEqual(on.Labels, nn.Labels) &&
		equality.Semantic.DeepEqual(on.Annotations, nn.Annotations) && equality.Semantic.DeepEqual(on.Spec, nn.Spec) {
		return
	}
	r.all(n)
}

func (r *Registrar) namespaceUpdated(o, n any) {
	on, ok1 := o.(*corev1.Namespace)
	nn, ok2 := n.(*corev1.Namespace)
	if ok1 && ok2 && equality.Semantic.DeepEqual(on.Labels, nn.Labels) {
		return
	}
	r.all(n)
}

func (r *Registrar) sliceChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	keys, _ := slicePods(obj)
	for _, k := range keys {
		r.enqueue(podPrefix + k)
	}
}

// slicePods indexes an endpoint slice by the "namespace/name" of the pods
// its endpoints target.
func slicePods(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, ep := range s.Endpoints {
		if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" {
			ns := ref.Namespace
			if ns == "" {
				ns = s.Namespace
			}
			out = append(out, ns+"/"+ref.Name)
		}
	}
	return out, nil
}
