package caddymodule

import (
	"context"
	"time"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// leadLister (and leadBook, with the dry run) is the lead list the admin API, the dashboard, the report, the
// export, resend and erase act on, and the token store destinations keep
// rotated OAuth tokens in. On a single node it is the local store
// (*queue.Store); in cluster mode it is the fleet's (fleetBook, over the
// cluster engine), so every node lists, resends and erases every node's
// leads.
type leadLister interface {
	List(f queue.Filter) (leads []*lead.Lead, nextCursor string, err error)
	Get(id string) (*lead.Lead, error)
	Retry(id string) error
	Delete(id string) error
	Stats() (queue.Stats, error)
	Each(from, to time.Time, fn func(*lead.Lead) bool) error
	crm.TokenStore
}

// leadBook is the lead list plus the dry run's held deliveries.
type leadBook interface {
	leadLister
	// The dry run's held deliveries (dryrun.go; in cluster mode they stay
	// in the node's own store until resend releases them).
	SetPreview(ctx context.Context, id, dest string, preview []lead.Request, errMsg string) error
	SendDryRun(id string) (int, error)
}

var _ leadBook = (*queue.Store)(nil)

// statsJSON is the /leadproxy/stats answer: the lead book's counts, and in
// cluster mode the fleet's state.
type statsJSON struct {
	queue.Stats
	Cluster *clusterStats `json:"cluster,omitempty"`
}
