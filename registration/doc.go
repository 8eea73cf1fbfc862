// Package registration owns the domain types shared by server and agent:
// registration entries, selectors and the validation of SPIFFE IDs that
// enter the system from operators or the network.
//
// It must not import server/, agent/ or any attestor.
package registration
