package nodeapi

// StreamingAgentIDs returns the IDs of the agents with an open sync
// stream, in no order (to recheck them against the datastore after a
// missed eviction notice, say).
func (s *Server) StreamingAgentIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.streams))
	for id := range s.streams {
		out = append(out, id)
	}
	return out
}
