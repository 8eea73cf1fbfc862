package k8sregistrar

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
)

// IDPrefix starts the ID of every entry a registrar owns; the admin API
// refuses caller-chosen entry IDs that start with it (see
// [IsReservedEntryID]). A registrar owns exactly the IDs under
// OwnedPrefix(cluster), so registrars of two clusters sharing one server
// never touch each other's entries.
const IDPrefix = registration.RegistrarEntryIDPrefix

// IsReservedEntryID reports whether id lies under the registrar's reserved
// prefix: no operator may create an entry with such an ID.
func IsReservedEntryID(id string) bool { return strings.HasPrefix(id, IDPrefix) }

// OwnedPrefix is the ID prefix of the entries the registrar of cluster
// owns.
func OwnedPrefix(cluster string) string { return IDPrefix + cluster + ":" }

// PodEntryID is the ID of the entry ClusterSPIFFEID csid gives the pod
// with UID podUID: the same on every run, so a restarted registrar finds
// its entries again.
func PodEntryID(cluster, csid, podUID string) string {
	return OwnedPrefix(cluster) + digest("pod", csid, podUID)
}

// StaticEntryID is the ID of the entry of ClusterStaticEntry name.
func StaticEntryID(cluster, name string) string {
	return OwnedPrefix(cluster) + digest("static", name)
}

func digest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil)[:20])
}

// AgentID is the SPIFFE ID the k8s_psat node attestor gives the agent on
// the node with UID nodeUID in cluster (attestors/k8spsat).
func AgentID(td spiffeid.TrustDomain, cluster, nodeUID string) (spiffeid.ID, error) {
	id, err := spiffeid.FromSegments(td, "agent", "k8s_psat", cluster, nodeUID)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("k8sregistrar: agent ID for node %q: %w", nodeUID, err)
	}
	return id, nil
}
