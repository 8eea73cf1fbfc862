package k8s

// The kubelet's /pods answer is a v1 PodList. These types decode only the
// fields the attestor reads, with the JSON names of k8s.io/api/core/v1, so
// that the agent does not link the Kubernetes API types (megabytes of code
// and init-time registration). Fields not declared here are skipped by the
// decoder without being checked; the tests decode every fixture with the
// real corev1 types as well and require the same selectors.

type podList struct {
	Items []podItem `json:"items"`
}

type podItem struct {
	Metadata podMeta   `json:"metadata"`
	Spec     podSpec   `json:"spec"`
	Status   podStatus `json:"status"`
}

type podMeta struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace"`
	UID             string            `json:"uid"`
	Labels          map[string]string `json:"labels"`
	OwnerReferences []ownerReference  `json:"ownerReferences"`
}

type ownerReference struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	UID  string `json:"uid"`
}

type podSpec struct {
	ServiceAccountName string `json:"serviceAccountName"`
	NodeName           string `json:"nodeName"`
}

type podStatus struct {
	ContainerStatuses          []containerStatus `json:"containerStatuses"`
	InitContainerStatuses      []containerStatus `json:"initContainerStatuses"`
	EphemeralContainerStatuses []containerStatus `json:"ephemeralContainerStatuses"`
}

type containerStatus struct {
	Name        string `json:"name"`
	Image       string `json:"image"`
	ImageID     string `json:"imageID"`
	ContainerID string `json:"containerID"`
}
