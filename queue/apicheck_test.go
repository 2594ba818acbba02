package queue

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

// The API the Caddy app is written against, spelled as the issue gives it.
var (
	_ func(Options) (*Store, error)                                                 = Open
	_ func(*Store) error                                                            = (*Store).Close
	_ func(*Store, context.Context, *lead.Lead, []string) (*lead.Lead, bool, error) = (*Store).Add
	_ func(*Store, string) (*lead.Lead, error)                                      = (*Store).Get
	_ func(*Store, Filter) ([]*lead.Lead, string, error)                            = (*Store).List
	_ func(*Store, string) error                                                    = (*Store).Delete
	_ func(*Store, string) error                                                    = (*Store).Retry
	_ func(*Store) (Stats, error)                                                   = (*Store).Stats
	_ crm.TokenStore                                                                = (*Store)(nil)
	_ func(*Store, *zap.Logger) *Engine                                             = NewEngine
	_ func(*Engine, EngineConfig)                                                   = (*Engine).Configure
	_ func(*Engine)                                                                 = (*Engine).Start
	_ func(*Engine, context.Context) error                                          = (*Engine).Stop
	_ func(*Engine)                                                                 = (*Engine).Notify
	_                                                                               = Options{Dir: "", SegmentSize: int64(0), DedupWindow: time.Duration(0), Retention: time.Duration(0), Logger: (*zap.Logger)(nil)}
	_                                                                               = Filter{Status: "", Form: "", Query: "", Limit: 0, Cursor: ""}
	_                                                                               = Stats{Leads: 0, ByStatus: map[string]int{}, ByDestination: map[string]map[string]int{}, QueueDepth: 0, OldestPendingSeconds: 0.0}
	_                                                                               = Rate{N: 0, Per: time.Duration(0)}
	_                                                                               = Backoff{Min: time.Duration(0), Max: time.Duration(0)}
	_                                                                               = ErrNotFound
	_                                                                               = EngineConfig{Senders: map[string]lead.Sender{}, Rates: map[string]Rate{}, RetryFor: 0, Concurrency: 0, Backoff: Backoff{}, Observe: func(ctx context.Context, dest string, l *lead.Lead) (context.Context, func(crmID string, err error)) {
		return ctx, nil
	}}
)
