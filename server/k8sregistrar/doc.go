// Package k8sregistrar registers Kubernetes workloads automatically: it
// watches pods, nodes, namespaces, endpoint slices and SPIRE's CRDs
// (ClusterSPIFFEID, ClusterStaticEntry, ClusterFederatedTrustDomain,
// spire.spiffe.io/v1alpha1, accepted as spire-controller-manager defines
// them) with client-go informers, and converges the registration entries it
// owns to what those objects ask for, writing only the differences.
//
// Ownership needs no schema: every entry the registrar writes has an ID
// that it mints deterministically under the reserved prefix [IDPrefix]
// (followed by the cluster name), and it never lists, updates or deletes
// an entry outside its own prefix. Operators cannot create IDs under the
// prefix (the admin API refuses them), so the two never collide.
//
// A pod's entries are parented to the agent of the pod's node,
// spiffe://<td>/agent/k8s_psat/<cluster>/<node UID>, and select it with
// k8s:ns, k8s:sa and k8s:pod-uid, which the agent's k8s workload attestor
// produces; so only that node's agent is ever given them.
//
// Several servers may run it: a coordination.k8s.io Lease elects the one
// that writes. Writes go through a [Store] the server supplies (its
// datastore plus its entry cache).
//
// It must not import server wiring, the datastore backends, the CA or the
// API packages, nor agent/.
package k8sregistrar
