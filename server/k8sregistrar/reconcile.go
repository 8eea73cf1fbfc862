package k8sregistrar

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

// maxCreateBatch bounds the entries of one CreateEntries call.
const maxCreateBatch = 500

// outcome is what one ClusterSPIFFEID did for one pod.
type outcome int

const (
	outSet          outcome = iota // an entry is wanted
	outRenderFailed                // the templates gave nothing valid
	outMasked                      // an earlier ClusterSPIFFEID gave the same entry
)

type podResult struct {
	csid string
	out  outcome
	id   string // outSet
	err  error  // outRenderFailed
}

type staticResult struct {
	id     string
	err    error
	reason string
	masked bool
}

// state is the leader's view; reset at each term.
type state struct {
	actual map[string]registration.Entry // owned entries as stored
	podIDs map[string][]string           // pod key -> IDs of its wanted entries
	podRes map[string][]podResult
	static map[string]staticResult // by ClusterStaticEntry name
	failed map[string]error        // entry ID -> last write error
	specs  map[string]*spec        // compiled, by UID and generation
}

func newState() *state {
	return &state{actual: map[string]registration.Entry{}, podIDs: map[string][]string{},
		podRes: map[string][]podResult{}, static: map[string]staticResult{}, failed: map[string]error{},
		specs: map[string]*spec{}}
}

func (r *Registrar) process(ctx context.Context, key string) error {
	switch {
	case key == keyAll:
		err := r.full(ctx)
		r.scheduleStatus()
		return err
	case key == keyStatus:
		return r.writeStatus(ctx)
	case strings.HasPrefix(key, podPrefix):
		err := r.syncPod(ctx, strings.TrimPrefix(key, podPrefix))
		r.scheduleStatus()
		return err
	}
	return nil
}

func (r *Registrar) scheduleStatus() {
	if q := r.queue.Load(); q != nil {
		(*q).AddAfter(keyStatus, statusDelay)
	}
}

// full converges every owned entry: it reads the owned entries from the
// store and recomputes every pod's and static entry's wanted state.
func (r *Registrar) full(ctx context.Context) error {
	all, _, err := r.cfg.Store.ListEntries(ctx)
	if err != nil {
		return fmt.Errorf("k8sregistrar: list entries: %w", err)
	}
	prefix := OwnedPrefix(r.cfg.Cluster)
	st := r.st
	st.actual = make(map[string]registration.Entry)
	for _, e := range all {
		if strings.HasPrefix(e.ID, prefix) {
			st.actual[e.ID] = e
		}
	}
	specs := r.specList()
	want := make(map[string]registration.Entry)
	st.podIDs, st.podRes = make(map[string][]string), make(map[string][]podResult)
	pods, err := r.pods.List(labels.Everything())
	if err != nil {
		return err
	}
	for _, p := range pods {
		key := p.Namespace + "/" + p.Name
		ents, res := r.podDesired(p, specs)
		for _, e := range ents {
			want[e.ID] = e
			st.podIDs[key] = append(st.podIDs[key], e.ID)
		}
		if len(res) > 0 {
			st.podRes[key] = res
		}
	}
	static, results := r.staticDesired()
	st.static = results
	for id, e := range static {
		want[id] = e
	}
	scope := make([]string, 0, len(st.actual))
	for id := range st.actual {
		scope = append(scope, id)
	}
	return r.converge(ctx, want, scope)
}

// syncPod converges the entries of the pod key ("namespace/name").
func (r *Registrar) syncPod(ctx context.Context, key string) error {
	st := r.st
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	var ents []registration.Entry
	var res []podResult
	p, err := r.pods.Pods(ns).Get(name)
	switch {
	case err == nil:
		ents, res = r.podDesired(p, r.specList())
	case !apierrors.IsNotFound(err):
		return err
	}
	want := make(map[string]registration.Entry, len(ents))
	ids := make([]string, 0, len(ents))
	for _, e := range ents {
		want[e.ID] = e
		ids = append(ids, e.ID)
	}
	scope := st.podIDs[key]
	if len(ids) > 0 {
		st.podIDs[key] = ids
	} else {
		delete(st.podIDs, key)
	}
	if len(res) > 0 {
		st.podRes[key] = res
	} else {
		delete(st.podRes, key)
	}
	return r.converge(ctx, want, scope)
}

// ignored reports whether pods of namespace ns get no entries.
func (r *Registrar) ignored(ns string) bool { return slices.Contains(r.cfg.IgnoreNamespaces, ns) }

// podDesired returns the entries the pod should have (IDs set) and what
// each selecting ClusterSPIFFEID did.
func (r *Registrar) podDesired(pod *corev1.Pod, specs []*spec) ([]registration.Entry, []podResult) {
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed ||
		r.ignored(pod.Namespace) {
		return nil, nil
	}
	ns, err := r.nss.Get(pod.Namespace)
	if err != nil {
		return nil, nil // its add event recomputes everything
	}
	node, err := r.nodes.Get(pod.Spec.NodeName)
	if err != nil {
		return nil, nil // likewise
	}
	parent, err := AgentID(r.cfg.TrustDomain, r.cfg.Cluster, string(node.UID))
	if err != nil {
		return nil, nil
	}
	var selected []*spec
	nonFallback := false
	for _, s := range specs {
		if s.err != nil {
			continue // refused as a whole: its status says why
		}
		if s.nsSel.Matches(labels.Set(ns.Labels)) && s.podSel.Matches(labels.Set(pod.Labels)) {
			selected = append(selected, s)
			nonFallback = nonFallback || !s.src.Fallback
		}
	}
	data := &TemplateData{
		TrustDomain: r.cfg.TrustDomain.Name(), ClusterName: r.cfg.Cluster, ClusterDomain: r.cfg.ClusterDomain,
		PodMeta: &pod.ObjectMeta, PodSpec: &pod.Spec, NodeMeta: &node.ObjectMeta, NodeSpec: &node.Spec,
	}
	var (
		ents []registration.Entry
		res  []podResult
		seen = map[string]bool{}
		dns  []string
		got  bool
	)
	for _, s := range selected {
		if s.src.Fallback && nonFallback {
			continue
		}
		if s.src.AutoPopulateDNSNames && !got {
			dns, got = r.serviceDNSNames(pod), true
		}
		var extra []string
		if s.src.AutoPopulateDNSNames {
			extra = dns
		}
		e, err := s.render(data, parent, r.cfg.TrustDomain, extra)
		if err != nil {
			res = append(res, podResult{csid: s.name, out: outRenderFailed, err: err})
			continue
		}
		if k := e.Key(); seen[k] {
			res = append(res, podResult{csid: s.name, out: outMasked})
			continue
		} else {
			seen[k] = true
		}
		e.ID = PodEntryID(r.cfg.Cluster, s.name, string(pod.UID))
		ents = append(ents, e)
		res = append(res, podResult{csid: s.name, out: outSet, id: e.ID})
	}
	return ents, res
}

// serviceDNSNames are the DNS names of the services whose endpoint slices
// target the pod: <svc>.<ns>.svc.<cluster domain>, <svc>.<ns>.svc,
// <svc>.<ns> and <svc>, in service name order.
func (r *Registrar) serviceDNSNames(pod *corev1.Pod) []string {
	objs, err := r.slices.ByIndex(byPod, pod.Namespace+"/"+pod.Name)
	if err != nil {
		return nil
	}
	var svcs []string
	for _, o := range objs {
		if m := metaOf(o); m.GetNamespace() == pod.Namespace {
			if svc := m.GetLabels()["kubernetes.io/service-name"]; svc != "" && !slices.Contains(svcs, svc) {
				svcs = append(svcs, svc)
			}
		}
	}
	sort.Strings(svcs)
	var out []string
	for _, svc := range svcs {
		base := svc + "." + pod.Namespace
		for _, n := range []string{base + ".svc." + r.cfg.ClusterDomain, base + ".svc", base, svc} {
			if registration.ValidateDNSName(n) == nil {
				out = appendUnique(out, n)
			}
		}
	}
	return out
}

// converge writes the differences between want and the stored entries:
// entries of want that are missing or differ are created or updated,
// entries named in scope that want lacks are deleted (first, so that a
// replacement with a new ID does not collide with its predecessor).
func (r *Registrar) converge(ctx context.Context, want map[string]registration.Entry, scope []string) error {
	st := r.st
	var errs []error
	for _, id := range scope {
		if _, ok := want[id]; ok {
			continue
		}
		if _, ok := st.actual[id]; !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := r.cfg.Store.DeleteEntry(ctx, id)
		if err != nil && !errors.Is(err, datastore.ErrNotFound) {
			errs = append(errs, fmt.Errorf("delete %s: %w", id, err))
			continue
		}
		if err == nil {
			r.writes.Add(1)
		}
		delete(st.actual, id)
		delete(st.failed, id)
	}
	var create []registration.Entry
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		e := want[id]
		old, ok := st.actual[id]
		if !ok {
			create = append(create, e)
			continue
		}
		if sameEntry(old, e) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		got, err := r.cfg.Store.UpdateEntry(ctx, e)
		switch {
		case errors.Is(err, datastore.ErrNotFound):
			delete(st.actual, id)
			create = append(create, e)
		case errors.Is(err, datastore.ErrAlreadyExists):
			st.failed[id] = fmt.Errorf("entry %s: a similar entry (same SPIFFE ID, parent and selectors) already exists", id)
		case err != nil:
			st.failed[id] = err
			errs = append(errs, fmt.Errorf("update %s: %w", id, err))
		default:
			r.writes.Add(1)
			st.actual[id] = got
			delete(st.failed, id)
		}
	}
	for len(create) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := create[:min(len(create), maxCreateBatch)]
		create = create[len(batch):]
		res, err := r.cfg.Store.CreateEntries(ctx, batch)
		if err != nil {
			for _, e := range batch {
				st.failed[e.ID] = err
			}
			errs = append(errs, fmt.Errorf("create %d entries: %w", len(batch), err))
			continue
		}
		for i, cr := range res {
			id := batch[i].ID
			switch {
			case errors.Is(cr.Err, datastore.ErrAlreadyExists):
				st.failed[id] = fmt.Errorf("entry %s: a similar entry (same SPIFFE ID, parent and selectors) already exists", id)
			case cr.Err != nil:
				st.failed[id] = cr.Err
				errs = append(errs, fmt.Errorf("create %s: %w", id, cr.Err))
			default:
				r.writes.Add(1)
				st.actual[id] = cr.Entry
				delete(st.failed, id)
			}
		}
	}
	return errors.Join(errs...)
}

// sameEntry reports whether stored entry a already is what b asks for.
func sameEntry(a, b registration.Entry) bool {
	fa, fb := tdNames(a), tdNames(b)
	return a.SPIFFEID == b.SPIFFEID && a.ParentID == b.ParentID &&
		registration.SelectorsKey(a.Selectors) == registration.SelectorsKey(b.Selectors) &&
		a.X509SVIDTTL == b.X509SVIDTTL && a.JWTSVIDTTL == b.JWTSVIDTTL && slices.Equal(a.DNSNames, b.DNSNames) &&
		slices.Equal(fa, fb) && a.Admin == b.Admin && a.Downstream == b.Downstream && a.Hint == b.Hint
}

func tdNames(e registration.Entry) []string {
	out := make([]string, len(e.FederatesWith))
	for i, td := range e.FederatesWith {
		out[i] = td.Name()
	}
	sort.Strings(out)
	return slices.Compact(out)
}
