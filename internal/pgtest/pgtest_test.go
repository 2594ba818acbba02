package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, dsn string) (*pgx.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	return pgx.Connect(ctx, dsn)
}

func run(t *testing.T, dsn, sql string) error {
	t.Helper()
	conn, err := connect(t, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(context.Background(), sql)
	return err
}

func value(t *testing.T, dsn, sql string) (string, error) {
	t.Helper()
	conn, err := connect(t, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var s string
	err = conn.QueryRow(context.Background(), sql).Scan(&s)
	return s, err
}

func TestDatabasesAreSeparate(t *testing.T) {
	s := Start(t)
	a, b := s.NewDB(t), s.NewDB(t)
	if a == b {
		t.Fatalf("two databases share a DSN: %s", a)
	}
	if err := run(t, a, "CREATE TABLE x (v text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := value(t, a, "SELECT count(*)::text FROM x"); err != nil {
		t.Fatalf("the table is not in its own database: %v", err)
	}
	if _, err := value(t, b, "SELECT count(*)::text FROM x"); err == nil {
		t.Fatal("a table created in one database is visible in another")
	}
	if Start(t) != s {
		t.Fatal("a second Start in one test binary started another server")
	}
	if u, err := value(t, a, "SELECT current_user::text"); err != nil || u != "postgres" {
		t.Fatalf("connected as %q, %v", u, err)
	}
}

func TestStopImmediateKeepsCommits(t *testing.T) {
	s := Start(t)
	dsn := s.NewDB(t)
	if err := run(t, dsn, "CREATE TABLE kept AS SELECT 'still here'::text AS v"); err != nil {
		t.Fatal(err)
	}
	s.StopImmediate(t)
	if err := run(t, dsn, "SELECT 1"); err == nil {
		t.Fatal("the server answers after StopImmediate")
	}
	s.Start(t)
	v, err := value(t, dsn, "SELECT v FROM kept")
	if err != nil || v != "still here" {
		t.Fatalf("an acknowledged commit after an immediate stop and a start: %q, %v", v, err)
	}
}
