package cluster

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"
)

// migrations are the schema's versions, in order: version i+1 is
// migrations[i]. Never edit one that shipped; append a new one.
var migrations = []string{
	// 1: the first schema.
	`
CREATE TABLE {s}.leads (
	id         text PRIMARY KEY,
	created_at timestamptz NOT NULL,
	stored_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
	node       text NOT NULL,
	form       text NOT NULL DEFAULT '',
	status     text NOT NULL,
	body       jsonb NOT NULL
);
CREATE INDEX leads_order ON {s}.leads (created_at DESC, id DESC);
CREATE INDEX leads_status ON {s}.leads (status, created_at DESC, id DESC);

CREATE TABLE {s}.dedup (
	key     bytea PRIMARY KEY,
	lead_id text NOT NULL
);
CREATE INDEX dedup_lead ON {s}.dedup (lead_id);

CREATE TABLE {s}.forwards (
	lead_id   text NOT NULL,
	dest      text NOT NULL,
	stored_id text NOT NULL,
	dup       boolean NOT NULL,
	node      text NOT NULL,
	at        timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (lead_id, dest)
);
CREATE INDEX forwards_stored ON {s}.forwards (stored_id);

CREATE SEQUENCE {s}.fencing;

CREATE TABLE {s}.deliveries (
	lead_id      text NOT NULL REFERENCES {s}.leads (id) ON DELETE CASCADE,
	dest         text NOT NULL,
	ord          bigint GENERATED ALWAYS AS IDENTITY,
	status       text NOT NULL,
	attempts     integer NOT NULL DEFAULT 0,
	due_at       timestamptz,
	since        timestamptz NOT NULL,
	last_error   text NOT NULL DEFAULT '',
	crm_id       text NOT NULL DEFAULT '',
	delivered_at timestamptz,
	lease_token  bigint,
	lease_until  timestamptz,
	lease_node   text,
	history      jsonb NOT NULL DEFAULT '[]',
	lead_created timestamptz NOT NULL,
	PRIMARY KEY (lead_id, dest)
);
CREATE INDEX deliveries_due ON {s}.deliveries (dest, due_at) WHERE lease_token IS NULL AND due_at IS NOT NULL;
CREATE INDEX deliveries_leased ON {s}.deliveries (lease_until) WHERE lease_token IS NOT NULL;
CREATE INDEX deliveries_open ON {s}.deliveries (lead_created) WHERE status IN ('pending', 'retrying');

CREATE TABLE {s}.rate_accounts (
	account      text PRIMARY KEY,
	n            integer NOT NULL,
	per          interval NOT NULL,
	paused_until timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE TABLE {s}.rate_slots (
	account   text NOT NULL REFERENCES {s}.rate_accounts (account) ON DELETE CASCADE,
	slot      integer NOT NULL,
	next_free timestamptz NOT NULL DEFAULT '-infinity',
	holder    bigint,
	PRIMARY KEY (account, slot)
);

CREATE TABLE {s}.tombstones (
	seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	lead_id text NOT NULL,
	at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE {s}.tokens (
	key        text PRIMARY KEY,
	value      text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE {s}.nodes (
	name        text PRIMARY KEY,
	started_at  timestamptz NOT NULL,
	last_seen   timestamptz NOT NULL,
	unforwarded integer NOT NULL DEFAULT 0
);
`,
	// 2: free slots found by the index, not by a walk over the account's.
	`
CREATE INDEX rate_slots_free ON {s}.rate_slots (account, next_free);
`,
	// 3: the claim's order (due_at, lead_id) read from the index as it is,
	// not sorted from a batch of at least 32 due rows each time.
	`
CREATE INDEX deliveries_due_order ON {s}.deliveries (dest, due_at, lead_id) WHERE lease_token IS NULL AND due_at IS NOT NULL;
DROP INDEX {s}.deliveries_due;
`,
	// 4: slot updates stay HOT (next_free is no longer indexed, and the
	// pages keep room for the new versions), so a claim reads the
	// account's few live slot rows instead of an index of dead ones; a
	// forward's tombstone check reads an index, not the whole table.
	`
DROP INDEX {s}.rate_slots_free;
ALTER TABLE {s}.rate_slots SET (fillfactor = 50);
CREATE INDEX tombstones_lead ON {s}.tombstones (lead_id);
`,
	// 5: Stats reads counts, not the tables: every change of a lead's or a
	// delivery's status appends its +1/-1 to counts (triggers, so every
	// writer, cascades and older nodes included, keeps them exact), and
	// Stats sums them, folding them into one row per count now and then.
	`
CREATE TABLE {s}.counts (
	kind   text NOT NULL,
	dest   text NOT NULL,
	status text NOT NULL,
	n      bigint NOT NULL
);
-- Inserts and deletes, of many rows at once: per statement.
CREATE FUNCTION {s}.count_rows() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
	IF TG_TABLE_NAME = 'leads' AND TG_OP = 'INSERT' THEN
		INSERT INTO {s}.counts (kind, dest, status, n) SELECT 'lead', '', status, count(*) FROM new_rows GROUP BY status;
	ELSIF TG_TABLE_NAME = 'leads' THEN
		INSERT INTO {s}.counts (kind, dest, status, n) SELECT 'lead', '', status, -count(*) FROM old_rows GROUP BY status;
	ELSIF TG_OP = 'INSERT' THEN
		INSERT INTO {s}.counts (kind, dest, status, n) SELECT 'delivery', dest, status, count(*) FROM new_rows GROUP BY dest, status;
	ELSE
		INSERT INTO {s}.counts (kind, dest, status, n) SELECT 'delivery', dest, status, -count(*) FROM old_rows GROUP BY dest, status;
	END IF;
	RETURN NULL;
END $f$;
-- A status change: per row, only when status changes.
CREATE FUNCTION {s}.count_lead_status() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
	INSERT INTO {s}.counts (kind, dest, status, n) VALUES ('lead', '', OLD.status, -1), ('lead', '', NEW.status, 1);
	RETURN NULL;
END $f$;
CREATE FUNCTION {s}.count_delivery_status() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
	INSERT INTO {s}.counts (kind, dest, status, n) VALUES ('delivery', OLD.dest, OLD.status, -1), ('delivery', NEW.dest, NEW.status, 1);
	RETURN NULL;
END $f$;
` + countTriggers("leads", "count_lead_status") + countTriggers("deliveries", "count_delivery_status") + `
-- The triggers hold writes to both tables until this commits: the counts
-- start exact.
INSERT INTO {s}.counts (kind, dest, status, n) SELECT 'lead', '', status, count(*) FROM {s}.leads GROUP BY status;
INSERT INTO {s}.counts (kind, dest, status, n) SELECT 'delivery', dest, status, count(*) FROM {s}.deliveries GROUP BY dest, status;
`,
}

// countTriggers keeps table's counts (schema version 5): per statement for
// inserts and deletes, per row for a change of status.
func countTriggers(table, statusFn string) string {
	return strings.NewReplacer("{t}", table, "{f}", statusFn).Replace(`
CREATE TRIGGER counts_added AFTER INSERT ON {s}.{t} REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION {s}.count_rows();
CREATE TRIGGER counts_removed AFTER DELETE ON {s}.{t} REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION {s}.count_rows();
CREATE TRIGGER counts_status AFTER UPDATE OF status ON {s}.{t}
	FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION {s}.{f}();`)
}

// SchemaVersion is the schema version this build migrates to.
var SchemaVersion = len(migrations)

// migrate brings the schema to SchemaVersion. It holds a session advisory
// lock of the schema throughout, so nodes starting together run each
// migration once, one after another; a version newer than this build's is
// an error (an older node must not run against a newer schema).
func (c *Cluster) migrate(ctx context.Context) (err error) {
	var end func(error)
	if c.cfg.Calls != nil {
		ctx, end = c.hook(ctx, "migrate")
		defer func() { end(err) }()
	}
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	key := c.lockKey("migrate")
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return err
	}
	defer func() {
		if _, uerr := conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", key); uerr != nil {
			// The session is broken: closing it releases the lock.
			conn.Conn().Close(context.Background())
		}
	}()
	if _, err := conn.Exec(ctx, c.q(`CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
	version    integer PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	node       text NOT NULL
)`)); err != nil {
		return fmt.Errorf("cluster: create schema %s: %w", c.cfg.Schema, err)
	}
	var have int
	if err := conn.QueryRow(ctx, c.q("SELECT coalesce(max(version), 0) FROM {s}.schema_migrations")).Scan(&have); err != nil {
		return err
	}
	if have > SchemaVersion {
		return fmt.Errorf("cluster: schema %s is at version %d, newer than this leadproxy's %d: upgrade this node", c.cfg.Schema, have, SchemaVersion)
	}
	for v := have + 1; v <= SchemaVersion; v++ {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, c.q(migrations[v-1])); err != nil {
			tx.Rollback(context.Background())
			return fmt.Errorf("cluster: migration %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, c.q("INSERT INTO {s}.schema_migrations (version, node) VALUES ($1, $2)"), v, c.cfg.Node); err != nil {
			tx.Rollback(context.Background())
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		c.log.Info("schema migrated", zap.String("schema", c.cfg.Schema), zap.Int("version", v))
	}
	return nil
}
