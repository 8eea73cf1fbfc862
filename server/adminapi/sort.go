package adminapi

import (
	"sort"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

func sortEntries(es []*apiv1.Entry) {
	sort.Slice(es, func(i, j int) bool {
		if es[i].SpiffeId != es[j].SpiffeId {
			return es[i].SpiffeId < es[j].SpiffeId
		}
		return es[i].Id < es[j].Id
	})
}
