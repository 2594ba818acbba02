// Package cluster is leadproxy's cluster mode: many edge nodes sharing one
// PostgreSQL server for one fleet-wide dedup, one lead list, one delivery
// engine with one rate limit per CRM account, and shared OAuth tokens.
//
// Each node still captures into its own nutsdb queue (package queue) before
// the visitor's request goes on; a forwarder moves each lead into the
// engine (Forward) from there. Nothing here is on the visitor's path: Open
// returns at once and connects in the background, and every call fails
// fast while the server is unreachable (Up, DownFor).
//
// Internals (tables, leases, the rate statement) are described in
// docs/cluster.md, "Engine internals".
package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/queue"
)

// Config configures a Cluster.
type Config struct {
	DSN           string        // postgres://...; placeholders already resolved by the caller
	Node          string        // default os.Hostname()
	Schema        string        // default "leadproxy"; every table lives in it
	FallbackAfter time.Duration // 0: while the engine is down deliveries wait (read by the caller)
	Retention     time.Duration // leads older than this are erased by one node at a time; 0 = keep
	DedupWindow   time.Duration // as queue.Options' dedup window; default queue.DefaultDedupWindow

	// Calls, if set, is called around every call to the server, with its
	// operation name (Ops), for metrics and spans: the returned func gets
	// the call's error. It must be cheap and must not block.
	Calls func(ctx context.Context, op string) (context.Context, func(err error))
}

// Ops are the operation names Config.Calls sees.
var Ops = []string{"migrate", "forward", "claim", "record", "release", "reap", "rates",
	"list", "get", "retry", "delete", "stats", "each", "erased_since", "load_token", "save_token",
	"heartbeat", "nodes", "retention"}

// DefaultSchema is Config.Schema's default.
const DefaultSchema = "leadproxy"

// ErrNotReady is returned while the cluster has not yet connected and
// migrated (Open connects in the background).
var ErrNotReady = errors.New("cluster: the engine is not connected yet")

// timing holds the engine's clocks; tests shorten them.
type timing struct {
	heartbeat      time.Duration // node heartbeat and AliveNodes refresh
	aliveFor       time.Duration // a node is alive while seen this recently
	poll           time.Duration // dispatch at least this often (NOTIFY fallback)
	attemptTimeout time.Duration // bounds one Send
	leaseFor       time.Duration // a claim's lease (> attemptTimeout + recording)
	retention      time.Duration // how often retention runs
	retryMax       time.Duration // the longest wait between reconnects
}

func defaultTiming() timing {
	return timing{
		heartbeat: 5 * time.Second,
		aliveFor:  20 * time.Second,
		poll:      5 * time.Second,
		// A destination's own timeout (30s by default) ends a send long
		// before these; they only bound a hung one, and how long a dead
		// node's claim waits before another node takes it.
		attemptTimeout: 2 * time.Minute,
		leaseFor:       3 * time.Minute,
		retention:      time.Minute,
		retryMax:       5 * time.Second,
	}
}

// Cluster is one node's handle on the engine. Safe for concurrent use.
type Cluster struct {
	cfg     Config
	log     *zap.Logger
	pool    *pgxpool.Pool
	connCfg *pgx.ConnConfig // for the LISTEN connection
	schema  string          // quoted
	channel string          // NOTIFY channel, unquoted
	t       timing

	ctx    context.Context // the Cluster's lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	ready     chan struct{}
	readyErr  atomic.Pointer[error] // the last connect error, for Ready's message
	up        atomic.Bool
	downSince atomic.Int64 // unix nanoseconds; 0 while up

	unforwarded atomic.Pointer[func() int]
	alive       atomic.Int64
	closeOnce   sync.Once

	eng  *engine
	fwdQ chan *fwdReq // forwards waiting for a batch (batch.go)

	// Tests: called when a forward joins the batch queue, and with the
	// size of each batch taken from it.
	onQueued func()
	onBatch  func(n int)
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)

// Open parses the DSN (a bad one is an error now) and returns at once:
// connecting, migrations (under an advisory lock, so nodes starting
// together are safe) and the node's registration happen in the background,
// retried while the server is unreachable.
func Open(ctx context.Context, cfg Config, log *zap.Logger) (*Cluster, error) {
	return open(cfg, log, defaultTiming())
}

func open(cfg Config, log *zap.Logger, t timing) (*Cluster, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if strings.TrimSpace(cfg.DSN) == "" {
		return nil, errors.New("cluster: no DSN (want postgres://user:password@host:5432/db?sslmode=...)")
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// The error quotes the DSN, password and all when it cannot find
		// the password's bounds: give only the cause.
		msg := "cluster: the DSN does not parse (want postgres://user:password@host:5432/db?sslmode=...)"
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			msg += ": " + pe.Unwrap().Error()
		}
		return nil, errors.New(msg)
	}
	if cfg.Node == "" {
		if cfg.Node, err = os.Hostname(); err != nil || cfg.Node == "" {
			cfg.Node = "node"
		}
	}
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if !schemaName.MatchString(cfg.Schema) {
		return nil, fmt.Errorf("cluster: schema %q: want lower-case letters, digits and _, starting with a letter or _, at most 48", cfg.Schema)
	}
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = queue.DefaultDedupWindow
	}
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("cluster: retention %v: want a positive duration or 0", cfg.Retention)
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "leadproxy " + cfg.Node
	pool, err := pgxpool.NewWithConfig(context.Background(), pc) // connects lazily
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{
		cfg:     cfg,
		log:     log.Named("cluster"),
		pool:    pool,
		connCfg: pc.ConnConfig.Copy(),
		schema:  pgx.Identifier{cfg.Schema}.Sanitize(),
		channel: cfg.Schema + "_wake",
		t:       t,
		ready:   make(chan struct{}),
	}
	c.downSince.Store(time.Now().UnixNano())
	c.alive.Store(1)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.eng = newEngine(c)
	c.fwdQ = make(chan *fwdReq, maxForwardBatch)
	c.wg.Add(2)
	go c.connect()
	go c.batcher()
	return c, nil
}

// Node is this node's name.
func (c *Cluster) Node() string { return c.cfg.Node }

// Config returns the configuration in force (defaults filled in).
func (c *Cluster) Config() Config { return c.cfg }

// Ready waits until the cluster is connected and migrated, or ctx ends (its
// error then says what the last connect attempt met).
func (c *Cluster) Ready(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-c.ctx.Done():
		return errors.New("cluster: closed")
	case <-ctx.Done():
		if p := c.readyErr.Load(); p != nil {
			return fmt.Errorf("cluster: not ready: %w", *p)
		}
		return ctx.Err()
	}
}

func (c *Cluster) isReady() bool {
	select {
	case <-c.ready:
		return true
	default:
		return false
	}
}

// Up reports whether the last call to the server succeeded.
func (c *Cluster) Up() bool { return c.up.Load() }

// DownFor is how long the server has been unreachable (0 while up): since
// the first failed call after a success, or since Open.
func (c *Cluster) DownFor() time.Duration {
	if c.up.Load() {
		return 0
	}
	since := c.downSince.Load()
	if since == 0 {
		return 0
	}
	return time.Since(time.Unix(0, since))
}

// Close stops the engine (attempts in flight get a few seconds, then are
// returned to the queue), the heartbeat and the listener, and closes the
// connections.
func (c *Cluster) Close() error {
	var err error
	c.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = c.eng.stop(ctx)
		cancel()
		c.cancel()
		c.wg.Wait()
		c.pool.Close()
	})
	return err
}

// kill is a crash, for tests: every goroutine stops and every connection
// closes, nothing is released or recorded (an attempt in flight records
// nothing when its sender returns).
func (c *Cluster) kill() {
	c.closeOnce.Do(func() {
		c.eng.kill()
		c.cancel()
		c.wg.Wait()
		c.pool.Close()
	})
}

// track updates Up/DownFor from a call's error.
func (c *Cluster) track(err error) {
	switch {
	case err == nil:
		c.up.Store(true)
		c.downSince.Store(0)
	case unreachable(err):
		if c.up.Swap(false) || c.downSince.Load() == 0 {
			c.downSince.Store(time.Now().UnixNano())
		}
	}
}

// unreachable tells a server that cannot be reached (or is shutting down)
// from an error in a statement.
func unreachable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" ||
			pe.Code == "57P03" || pe.Code == "53300"
	}
	return true
}

// call runs one operation against the server: the Calls hook around it,
// Up/DownFor from its outcome. Before the cluster is ready it fails at once.
func (c *Cluster) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	if !c.isReady() {
		return ErrNotReady
	}
	var end func(error)
	if c.cfg.Calls != nil {
		ctx, end = c.hook(ctx, op)
	}
	err := fn(ctx)
	c.track(err)
	if end != nil {
		end(err)
	}
	return err
}

func (c *Cluster) hook(ctx context.Context, op string) (out context.Context, end func(error)) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("cluster call hook panicked", zap.Any("panic", p))
			out, end = ctx, nil
		}
	}()
	out, end = c.cfg.Calls(ctx, op)
	if out == nil {
		out = ctx
	}
	return out, end
}

// q puts the schema into a statement: {s} is the quoted schema name.
func (c *Cluster) q(sql string) string { return strings.ReplaceAll(sql, "{s}", c.schema) }

// lockKey is an advisory lock key of this schema.
func (c *Cluster) lockKey(name string) int64 {
	h := sha256.Sum256([]byte("leadproxy:" + c.cfg.Schema + ":" + name))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

// connect migrates and registers the node, retrying until it succeeds or
// the cluster closes; then starts the background loops.
func (c *Cluster) connect() {
	defer c.wg.Done()
	wait := 100 * time.Millisecond
	for {
		err := c.migrate(c.ctx)
		if err == nil {
			err = c.heartbeat(c.ctx)
		}
		if err == nil {
			break
		}
		if c.ctx.Err() != nil {
			return
		}
		c.track(err)
		c.readyErr.Store(&err)
		c.log.Warn("engine not reachable yet; retrying", zap.Error(err), zap.Duration("in", wait))
		if !sleep(c.ctx, wait) {
			return
		}
		wait = min(wait*2, c.t.retryMax)
	}
	c.track(nil)
	close(c.ready)
	c.log.Info("connected to the engine", zap.String("node", c.cfg.Node), zap.String("schema", c.cfg.Schema))
	c.wg.Add(2)
	go c.beat()
	go c.listen()
	c.eng.notify()
}

// sleep waits d or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// tx runs fn in one transaction, again (up to a few times) when the server
// aborted it for a deadlock or a serialization failure.
func (c *Cluster) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	var err error
	for try := 0; try < 5; try++ {
		if err = pgx.BeginFunc(ctx, c.pool, fn); !retryable(err) {
			return err
		}
	}
	return err
}

// retryable tells a deadlock or a serialization failure: the transaction
// may simply run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}
