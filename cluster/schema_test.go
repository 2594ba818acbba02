package cluster

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// Five nodes starting at once on an empty database: each migration runs
// once and every node comes up.
func TestMigrationsRacedByConcurrentOpens(t *testing.T) {
	dsn := newDB(t)
	var wg sync.WaitGroup
	nodes := make([]*Cluster, 5)
	errs := make([]error, 5)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := open(Config{DSN: dsn, Node: "n" + string(rune('a'+i))}, zap.NewNop(), testTiming())
			if err != nil {
				errs[i] = err
				return
			}
			nodes[i] = c
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			errs[i] = c.Ready(ctx)
		}()
	}
	wg.Wait()
	for i, c := range nodes {
		if c != nil {
			defer c.Close()
		}
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
	}
	conn := connect(t, dsn)
	var n, distinct, top int
	if err := conn.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT version), max(version) FROM leadproxy.schema_migrations`).Scan(&n, &distinct, &top); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion || distinct != SchemaVersion || top != SchemaVersion {
		t.Fatalf("schema_migrations: %d rows, %d versions, top %d; want each of 1..%d once", n, distinct, top, SchemaVersion)
	}
	// Every node works on the one schema.
	l := newLead()
	if _, _, err := nodes[4].Forward(context.Background(), l, "crm", nil); err != nil {
		t.Fatal(err)
	}
	if got := get(t, nodes[0], l.ID); got.ID != l.ID {
		t.Fatalf("node a reads %q", got.ID)
	}
}

// Two schemas in one database are two fleets.
func TestSchemasAreSeparate(t *testing.T) {
	dsn := newDB(t)
	a := node(t, dsn, "a")
	b := node(t, dsn, "b", func(c *Config, _ *timing) { c.Schema = "other_fleet" })
	l := newLead()
	forward(t, a, l, "crm")
	if _, err := b.Get(l.ID); err == nil {
		t.Fatal("a lead forwarded into one schema is read from another")
	}
}

// A newer schema than this build knows is refused, not run against.
func TestNewerSchemaRefused(t *testing.T) {
	dsn := newDB(t)
	node(t, dsn, "a").Close()
	conn := connect(t, dsn)
	if _, err := conn.Exec(context.Background(), "INSERT INTO leadproxy.schema_migrations (version, node) VALUES ($1, 'future')", SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	c, err := open(Config{DSN: dsn, Node: "old"}, zap.NewNop(), testTiming())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = c.Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "newer than this leadproxy's") {
		t.Fatalf("Ready: %v; want the newer schema named", err)
	}
}

func TestOpenRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no DSN"},
		{Config{DSN: "postgres://user:s3cr3t-pass@host:notaport/db"}, "does not parse"},
		{Config{DSN: "postgres://u@h/db", Schema: "Bad-Name"}, "schema"},
		{Config{DSN: "postgres://u@h/db", Retention: -time.Second}, "retention"},
	} {
		c, err := Open(context.Background(), tc.cfg, nil)
		if err == nil {
			c.Close()
			t.Errorf("%+v: no error", tc.cfg)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%+v: %v; want %q and no password", tc.cfg, err, tc.want)
		}
	}
}

// Open returns at once with the server unreachable; calls fail fast and
// the cluster says it is down.
func TestOpenDoesNotWaitForTheServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c, err := Open(context.Background(), Config{DSN: "postgres://postgres@" + addr + "/db?sslmode=disable&connect_timeout=1", Node: "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Up() {
		t.Fatal("up before any connection")
	}
	if _, _, err := c.Forward(context.Background(), newLead(), "crm", nil); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Forward while unreachable: %v; want ErrNotReady", err)
	}
	if _, _, err := c.List(queueFilter()); !errors.Is(err, ErrNotReady) {
		t.Fatalf("List while unreachable: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err == nil {
		t.Fatal("ready with no server")
	}
	if c.DownFor() <= 0 {
		t.Fatal("DownFor is 0 while the server was never reached")
	}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// A fleet on schema version 3 upgrades when a new node starts: its leads,
// forwards and rate slots are kept, rate_slots_free is gone (slot updates
// may be HOT), the slot table keeps room on its pages, tombstones are
// indexed by lead, the counts start from the rows there are, and the old
// rows are claimed and delivered at the account's rate.
func TestUpgradeFromVersion3(t *testing.T) {
	dsn := newDB(t)
	SchemaVersion = 3
	old := node(t, dsn, "old")
	SchemaVersion = len(migrations)
	ls := []*lead.Lead{newLead(), newLead(), newLead()}
	for _, l := range ls {
		forward(t, old, l, "crm")
	}
	// The old node writes its account's slots, and is gone.
	old.Configure(queue.EngineConfig{Senders: map[string]lead.Sender{"crm": senderFunc(func(context.Context, *lead.Lead) (string, error) {
		return "", errors.New("the old node never sends")
	})}, Rates: map[string]queue.Rate{"crm": {N: 2, Per: time.Second}}}, nil)
	conn := connect(t, dsn)
	ctx := context.Background()
	var slots int
	for slots < 2 {
		old.eng.dispatch() // writes the rates
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM leadproxy.rate_slots").Scan(&slots); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()

	crm, rec := &fakeCRM{}, &recorder{}
	c := node(t, dsn, "new")
	var version int
	var options []string
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM leadproxy.schema_migrations").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != SchemaVersion {
		t.Fatalf("schema version %d after the upgrade; want %d", version, SchemaVersion)
	}
	statsExact(t, c) // the counts start from the rows the old version wrote
	rows, _ := conn.Query(ctx, "SELECT indexname FROM pg_indexes WHERE schemaname = 'leadproxy' AND tablename IN ('rate_slots', 'tombstones') ORDER BY 1")
	if indexes, err := pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || strings.Join(indexes, ",") != "rate_slots_pkey,tombstones_lead,tombstones_pkey" {
		t.Fatalf("indexes after the upgrade: %v %v", indexes, err)
	}
	if err := conn.QueryRow(ctx, "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = 'leadproxy.rate_slots'::regclass").Scan(&options); err != nil || strings.Join(options, ",") != "fillfactor=50" {
		t.Fatalf("rate_slots options: %v %v", options, err)
	}
	engineOn(c, crm, rec, queue.EngineConfig{Rates: map[string]queue.Rate{"crm": {N: 2, Per: time.Second}}}, nil, "crm")
	rec.until(t, "the old leads delivered", func() bool {
		return rec.count(func(r recorded) bool { return r.status == lead.StatusDelivered }) == len(ls)
	})
	for _, l := range ls {
		if got := get(t, c, l.ID); got.Status() != lead.StatusDelivered || len(got.Deliveries) != 1 {
			t.Fatalf("lead %s after the upgrade: %+v", l.ID, got.Deliveries)
		}
	}
	statsExact(t, c)
	var at []time.Time
	for _, s := range crm.all() {
		at = append(at, s.at)
	}
	if most, from := maxInWindow(at, time.Second); most > 2 {
		t.Fatalf("%d sends in the second from %v; the rate is 2/1s", most, from)
	}
}
