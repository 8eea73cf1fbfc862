package k8s

import (
	"slices"
	"strconv"
	"strings"

	"github.com/hallmarkid/hallmark/registration"
)

// SelectorType is the type of every selector this attestor produces.
const SelectorType = "k8s"

// podSelectors returns the values shared by every container of a pod.
func podSelectors(pod *podItem) []string {
	v := []string{
		"ns:" + pod.Metadata.Namespace,
		"sa:" + pod.Spec.ServiceAccountName,
		"pod-uid:" + pod.Metadata.UID,
		"pod-name:" + pod.Metadata.Name,
		"node-name:" + pod.Spec.NodeName,
	}
	for k, val := range pod.Metadata.Labels {
		v = append(v, "pod-label:"+k+":"+val)
	}
	for _, o := range pod.Metadata.OwnerReferences {
		v = append(v, "pod-owner:"+o.Kind+":"+o.Name, "pod-owner-uid:"+o.Kind+":"+o.UID)
	}
	images := 0
	for _, st := range pod.Status.ContainerStatuses {
		v = append(v, "pod-image:"+st.Image, "pod-image:"+st.ImageID)
		images++
	}
	initImages := 0
	for _, st := range pod.Status.InitContainerStatuses {
		v = append(v, "pod-init-image:"+st.Image, "pod-init-image:"+st.ImageID)
		initImages++
	}
	v = append(v, "pod-image-count:"+strconv.Itoa(images), "pod-init-image-count:"+strconv.Itoa(initImages))
	return v
}

// containerSelectors adds a container's own values to the pod's and
// returns the valid ones, sorted and without duplicates. Values that would
// not make a valid selector (empty, too long, control characters) are
// dropped: no registration can name them anyway.
func containerSelectors(common []string, st *containerStatus) []string {
	v := make([]string, 0, len(common)+3)
	v = append(v, common...)
	v = append(v, "container-name:"+st.Name, "container-image:"+st.Image, "container-image:"+st.ImageID)
	out := v[:0]
	for _, s := range v {
		if validValue(s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// validValue drops "name:" with nothing after it and anything
// registration would reject.
func validValue(s string) bool {
	// An empty label value is legitimate (app=""); an empty name, image
	// or namespace is not worth a selector.
	if s == "" || s[len(s)-1] == ':' && !strings.HasPrefix(s, "pod-label:") {
		return false
	}
	return registration.Selector{Type: SelectorType, Value: s}.Validate() == nil
}
