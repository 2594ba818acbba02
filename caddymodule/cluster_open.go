package caddymodule

import (
	"context"

	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/cluster"
	"github.com/leadproxy/leadproxy/lead"
)

func init() {
	openCluster = func(ctx context.Context, cp clusterParams, log *zap.Logger) (fleet, error) {
		c, err := cluster.Open(ctx, cluster.Config{DSN: cp.DSN, Node: cp.Node, Schema: cp.Schema,
			FallbackAfter: cp.FallbackAfter, Retention: cp.Retention, DedupWindow: cp.DedupWindow,
			Calls: clusterCallHook}, log)
		if err != nil {
			return nil, err
		}
		return clusterAdapter{c}, nil
	}
}

// clusterAdapter is *cluster.Cluster as the node's fleet: the two methods
// whose types are the cluster package's own are translated.
type clusterAdapter struct{ *cluster.Cluster }

func (c clusterAdapter) Forward(ctx context.Context, l *lead.Lead, dest string, done *fallbackDone) (string, bool, error) {
	var d *cluster.Done
	if done != nil {
		d = &cluster.Done{CRMID: done.CRMID, At: done.At}
	}
	return c.Cluster.Forward(ctx, l, dest, d)
}

func (c clusterAdapter) Nodes(ctx context.Context) ([]nodeState, error) {
	ns, err := c.Cluster.Nodes(ctx)
	out := make([]nodeState, len(ns))
	for i, n := range ns {
		out[i] = nodeState{Name: n.Name, LastSeen: n.LastSeen, Unforwarded: n.Unforwarded, Alive: n.Alive}
	}
	return out, err
}

var _ fleet = clusterAdapter{}
