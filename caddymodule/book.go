package caddymodule

import (
	"time"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// leadBook is the lead list the admin API, the dashboard, the report, the
// export, resend and erase act on, and the token store destinations keep
// rotated OAuth tokens in. On a single node it is the local store
// (*queue.Store); in cluster mode it is the fleet's (fleetBook, over the
// cluster engine), so every node lists, resends and erases every node's
// leads.
type leadBook interface {
	List(f queue.Filter) (leads []*lead.Lead, nextCursor string, err error)
	Get(id string) (*lead.Lead, error)
	Retry(id string) error
	Delete(id string) error
	Stats() (queue.Stats, error)
	Each(from, to time.Time, fn func(*lead.Lead) bool) error
	crm.TokenStore
}

var _ leadBook = (*queue.Store)(nil)

// statsJSON is the /leadproxy/stats answer: the lead book's counts, and in
// cluster mode the fleet's state.
type statsJSON struct {
	queue.Stats
	Cluster *clusterStats `json:"cluster,omitempty"`
}
