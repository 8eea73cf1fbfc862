package k8sregistrar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// ConditionReady is the condition the registrar sets on every object it
// reconciles: True when everything the object asks for is set.
const ConditionReady = "Ready"

// Reasons of the Ready condition besides ReasonInvalidSpec and
// ReasonUnsupported.
const (
	ReasonReconciled     = "Reconciled"
	ReasonRenderFailures = "RenderFailures"
	ReasonEntryFailures  = "EntryFailures"
	ReasonMasked         = "Masked"
	ReasonConfigured     = "ConfiguredOnServer"
	ReasonNotConfigured  = "NotConfiguredOnServer"
	ReasonApplied        = "Applied"
	ReasonConflict       = "Conflict"
	ReasonApplyFailed    = "ApplyFailed"
)

const maxMessage = 1024

func condition(gen int64, ok bool, reason, msg string) metav1.Condition {
	st := metav1.ConditionTrue
	if !ok {
		st = metav1.ConditionFalse
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	return metav1.Condition{Type: ConditionReady, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen}
}

// writeStatus brings the status of every object that is ours up to date,
// writing only those that changed.
func (r *Registrar) writeStatus(ctx context.Context) error {
	var errs []error
	specs := map[string]*spec{}
	for _, s := range r.specList() {
		specs[s.name] = s
	}
	stats, firstErr := r.podStats()
	nss, _ := r.nss.List(labels.Everything())
	for _, c := range r.csidObjects() {
		s := specs[c.Name]
		if s == nil {
			continue
		}
		st := stats[c.Name]
		var cond metav1.Condition
		switch {
		case s.err != nil:
			cond = condition(c.Generation, false, s.errReason, s.err.Error())
		case st.PodEntryRenderFailures > 0:
			cond = condition(c.Generation, false, ReasonRenderFailures, fmt.Sprintf("%d pods: %v", st.PodEntryRenderFailures, firstErr[c.Name]))
		case st.EntryFailures > 0:
			cond = condition(c.Generation, false, ReasonEntryFailures, fmt.Sprintf("%d entries: %v", st.EntryFailures, firstErr[c.Name]))
		default:
			cond = condition(c.Generation, true, ReasonReconciled, fmt.Sprintf("%d entries set", st.EntriesToSet))
		}
		if s.err == nil {
			for _, ns := range nss {
				if s.nsSel.Matches(labels.Set(ns.Labels)) {
					if r.ignored(ns.Name) {
						st.NamespacesIgnored++
					} else {
						st.NamespacesSelected++
					}
				}
			}
		}
		next := ClusterSPIFFEIDStatus{Stats: st, Conditions: append([]metav1.Condition(nil), c.Status.Conditions...)}
		apimeta.SetStatusCondition(&next.Conditions, cond)
		if !equality.Semantic.DeepEqual(next, c.Status) {
			errs = append(errs, r.patchStatus(ctx, ClusterSPIFFEIDs, c.Name, next))
		}
	}
	for _, c := range r.cseObjects() {
		res, ok := r.st.static[c.Name]
		if !ok {
			continue
		}
		next := ClusterStaticEntryStatus{Rendered: res.err == nil, Masked: res.masked,
			Conditions: append([]metav1.Condition(nil), c.Status.Conditions...)}
		werr := r.st.failed[res.id]
		_, stored := r.st.actual[res.id]
		next.Set = res.err == nil && !res.masked && werr == nil && stored
		var cond metav1.Condition
		switch {
		case res.err != nil:
			cond = condition(c.Generation, false, res.reason, res.err.Error())
		case res.masked:
			cond = condition(c.Generation, false, ReasonMasked, "another ClusterStaticEntry (earlier by name) gives the same entry")
		case werr != nil:
			cond = condition(c.Generation, false, ReasonEntryFailures, werr.Error())
		default:
			cond = condition(c.Generation, true, ReasonReconciled, "entry "+res.id+" set")
		}
		apimeta.SetStatusCondition(&next.Conditions, cond)
		if !equality.Semantic.DeepEqual(next, c.Status) {
			errs = append(errs, r.patchStatus(ctx, ClusterStaticEntries, c.Name, next))
		}
	}
	errs = append(errs, r.federationStatus(ctx))
	return errors.Join(errs...)
}

// podStats aggregates the pods' results per ClusterSPIFFEID, with the
// first failure of each (pods in key order).
func (r *Registrar) podStats() (map[string]ClusterSPIFFEIDStats, map[string]string) {
	keys := make([]string, 0, len(r.st.podRes))
	for k := range r.st.podRes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	stats := map[string]ClusterSPIFFEIDStats{}
	first := map[string]string{}
	for _, k := range keys {
		for _, pr := range r.st.podRes[k] {
			s := stats[pr.csid]
			s.PodsSelected++
			switch pr.out {
			case outRenderFailed:
				s.PodEntryRenderFailures++
				if first[pr.csid] == "" {
					first[pr.csid] = "pod " + k + ": " + pr.err.Error()
				}
			case outMasked:
				s.EntriesMasked++
			case outSet:
				s.EntriesToSet++
				if err := r.st.failed[pr.id]; err != nil {
					s.EntryFailures++
					if first[pr.csid] == "" {
						first[pr.csid] = "pod " + k + ": " + err.Error()
					}
				}
			}
			stats[pr.csid] = s
		}
	}
	return stats, first
}

func (r *Registrar) patchStatus(ctx context.Context, gvr schema.GroupVersionResource, name string, status any) error {
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	_, err = r.dyn.Resource(gvr).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("k8sregistrar: status of %s %s: %w", gvr.Resource, name, err)
	}
	return nil
}
