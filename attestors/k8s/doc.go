// Package k8s is the Kubernetes workload attestor of the agent. It owns the
// parsing of /proc/<pid>/cgroup into a pod UID and container ID, the kubelet
// /pods client (with its shared in-flight request and short cache) and the
// mapping of a pod container to "k8s" selectors named as SPIRE names them,
// so that existing registrations carry over.
//
// /proc/<pid>/cgroup is the only source of a process's pod: it is written by
// the kernel. /proc/<pid>/mountinfo, which a workload can shape with its own
// mount namespace, is never read.
//
// The /pods answer is decoded into the package's own small types holding
// only the fields it reads (podlist.go), never into k8s.io/api/core/v1:
// those types would cost the agent megabytes of resident code. Tests decode
// the same bytes with corev1 to prove the two agree.
//
// It must not import agent/, server/, other attestors or, outside tests,
// k8s.io/api and k8s.io/apimachinery.
package k8s
