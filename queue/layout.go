// Package queue is the durable lead store (nutsdb) and the delivery engine
// that drains it into the CRM destinations.
//
// The Caddy app opens one Store and one Engine per folder and shares them
// between config generations: Open, NewEngine, Configure, Start; on a reload
// Configure again; at the end Stop the engine, then Close the store. The
// store purges leads past Retention and merges its files in the background
// (Compact), so the folder stays bounded.
//
// # On-disk layout (nutsdb v1.1.0, KV/BTree buckets only)
//
// be64(t) is t in Unix milliseconds, big-endian, 8 bytes, so byte order is
// time order. at is when the lead was stored. 0x00 separates variable-length
// parts: destination names and lead ids never contain it (checked on the way
// in). Time order never relies on the shape of lead ids.
//
//	bucket    key                                       value
//	lead      id                                        JSON leadRec: the lead without deliveries, at, destination names
//	time      be64(at) id                               empty: leads in time order (lists, retention)
//	delivery  id 0x00 dest                              JSON deliveryRec: status, attempts, last error, crm id, due/lease bookkeeping, the last 20 attempts
//	state     status 0x00 dest 0x00 be64(at) id         empty: one per delivery, its current status (stats, list filters, queue depth)
//	due       dest 0x00 be64(next_ms) id                empty: the schedule, one per delivery waiting to be sent
//	lease     be64(until_ms) dest 0x00 id               lease token of the engine attempt that holds the delivery
//	dedup     "s" sha256(site, submission id)           id of the lead that submission made (a dry-run lead's site is prefixed, dryrun.go)
//	          "c" sha256(site, form, contact)           id of the first lead with that contact (dedup_window starts there)
//	          "d" sha256(contact key, name, email, comment, extra, crm)  id of the first lead with that contact and data
//	token     key                                       OAuth token a destination saved (crm.TokenStore)
//	meta      "schema"                                  "1"
//	meta      "secret/" name                            32 random bytes (Store.Secret: the marker cookie's HMAC key)
//
// # Invariants (kept by putDelivery, the one function that writes a delivery)
//
//   - A delivery has exactly one state key, for its current status.
//   - rec.Due != 0 ⇔ it has the due key dest‖be64(rec.Due)‖id. The schedule
//     is one time-ordered queue per destination (the destination leads the
//     key), so the dispatcher seeks each destination's earliest item in
//     O(log n) and never walks another destination's backlog. A delivery
//     whose destination has no sender is parked at be64(parkedMs), after
//     every real time; Configure moves it back to now when the destination
//     returns.
//   - rec.Lease != "" ⇔ it has the lease key be64(rec.LeaseUntil)‖dest‖id
//     holding rec.Lease, and no due key. Only the attempt whose token equals
//     rec.Lease may record a result; a reaped, released or re-claimed lease
//     changes the token, so a stale attempt's result is dropped.
//   - Pending and retrying deliveries are either due or leased; delivered,
//     failed and dry_run ones are neither (the engine never sees a dry_run
//     delivery; SendDryRun makes it pending). Leases are not valid across a restart: Open
//     returns every one of them to due.
//   - A lead has exactly one time key; dedup keys hold hashes, never
//     personal data; all of them are erased with the lead.
//
// Every write goes through one committer goroutine (Store.write) that runs
// the queued operations in a single db.Update: one fsync for many leads,
// claims and results. Every transaction callback recovers its own panics
// (a panic inside a nutsdb transaction would leave its lock held), no
// network I/O happens inside one, and CommitWith/WriteBatch are never used.
package queue

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nutsdb/nutsdb"

	"github.com/leadproxy/leadproxy/lead"
)

const (
	bLead     = "lead"
	bTime     = "time"
	bDelivery = "delivery"
	bState    = "state"
	bDue      = "due"
	bLease    = "lease"
	bDedup    = "dedup"
	bToken    = "token"
	bMeta     = "meta"

	schemaVersion = "1"
	maxIDLen      = 64
	// parkedMs is the due time of deliveries whose destination is not
	// configured: later than any real time, earlier than overflow.
	parkedMs = int64(math.MaxInt64 >> 1)
)

var allBuckets = []string{bLead, bTime, bDelivery, bState, bDue, bLease, bDedup, bToken, bMeta}

// leadRec is the stored lead: the record without its deliveries, which live
// in their own keys, and the destinations it was queued for.
type leadRec struct {
	Lead  *lead.Lead `json:"lead"`
	At    int64      `json:"at"` // stored at, Unix ms: its time key
	Dests []string   `json:"dests,omitempty"`
	// DryRun: captured under dry_run (dryrun.go); its dedup keys are its own.
	DryRun bool `json:"dry_run,omitempty"`
}

// deliveryRec is one lead's state for one destination. Times are Unix ms.
type deliveryRec struct {
	At          int64  `json:"at"` // the lead's, for the state key
	Status      string `json:"status"`
	Attempts    int    `json:"attempts,omitempty"`
	Due         int64  `json:"due,omitempty"`   // due-key time; 0 when not waiting
	Since       int64  `json:"since,omitempty"` // retry_for counts from here (queued or Retry)
	LastError   string `json:"last_error,omitempty"`
	CRMID       string `json:"crm_id,omitempty"`
	DeliveredAt int64  `json:"delivered_at,omitempty"`
	Lease       string `json:"lease,omitempty"`
	LeaseUntil  int64  `json:"lease_until,omitempty"`
	// History: the last MaxHistory attempts, oldest first.
	History []attemptRec `json:"history,omitempty"`
	// Preview is what a dry_run delivery would send (dryrun.go).
	Preview []lead.Request `json:"preview,omitempty"`
}

// attemptRec is one attempt in a delivery's history.
type attemptRec struct {
	At      int64  `json:"at"`
	TookMs  int64  `json:"took_ms"`
	Outcome string `json:"outcome"` // delivered, retry, failed
	HTTP    int    `json:"http,omitempty"`
	CRMID   string `json:"crm_id,omitempty"`
}

// MaxHistory (exported for the cluster engine) bounds a delivery's history: a lead retried for days keeps
// its last attempts, not thousands.
const MaxHistory = 20

func (r *deliveryRec) final() bool {
	return r.Status == lead.StatusDelivered || r.Status == lead.StatusFailed
}

func (r *deliveryRec) public(dest string) lead.Delivery {
	d := lead.Delivery{
		Destination: dest,
		Status:      r.Status,
		Attempts:    r.Attempts,
		LastError:   r.LastError,
		CRMID:       r.CRMID,
		Preview:     r.Preview,
	}
	if r.Due != 0 && r.Due != parkedMs {
		t := msTime(r.Due)
		d.NextAt = &t
	}
	if r.DeliveredAt != 0 {
		t := msTime(r.DeliveredAt)
		d.DeliveredAt = &t
	}
	for _, a := range r.History {
		d.History = append(d.History, lead.Attempt{At: msTime(a.At), Took: time.Duration(a.TookMs) * time.Millisecond,
			Outcome: a.Outcome, HTTPStatus: a.HTTP, CRMID: a.CRMID})
	}
	return d
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func be64(ms int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(ms))
	return b[:]
}

// dueKey is the schedule key: dest 0x00 be64(ms) id.
func dueKey(dest string, ms int64, id string) []byte {
	k := make([]byte, 0, len(dest)+1+8+len(id))
	k = append(k, dest...)
	k = append(k, 0)
	k = append(k, be64(ms)...)
	return append(k, id...)
}

// parseDueKey splits a due key; ok is false for a malformed key.
func parseDueKey(k []byte) (dest string, ms int64, id string, ok bool) {
	i := bytes.IndexByte(k, 0)
	if i < 1 || len(k) <= i+1+8 {
		return "", 0, "", false
	}
	return string(k[:i]), int64(binary.BigEndian.Uint64(k[i+1 : i+9])), string(k[i+9:]), true
}

// timedKey is the lease key: be64(ms) dest 0x00 id.
func timedKey(ms int64, dest, id string) []byte {
	k := make([]byte, 0, 8+len(dest)+1+len(id))
	k = append(k, be64(ms)...)
	k = append(k, dest...)
	k = append(k, 0)
	return append(k, id...)
}

// parseTimedKey splits a lease key; ok is false for a malformed key.
func parseTimedKey(k []byte) (ms int64, dest, id string, ok bool) {
	if len(k) < 8+3 {
		return 0, "", "", false
	}
	dest, id, ok = strings.Cut(string(k[8:]), "\x00")
	return int64(binary.BigEndian.Uint64(k[:8])), dest, id, ok
}

// timeKey orders leads: be64(at) id.
func timeKey(at int64, id string) []byte { return append(be64(at), id...) }

func parseTimeKey(k []byte) (at int64, id string, ok bool) {
	if len(k) <= 8 {
		return 0, "", false
	}
	return int64(binary.BigEndian.Uint64(k[:8])), string(k[8:]), true
}

func deliveryKey(id, dest string) []byte { return []byte(id + "\x00" + dest) }

func stateKey(status, dest string, at int64, id string) []byte {
	return append([]byte(status+"\x00"+dest+"\x00"), timeKey(at, id)...)
}

// parseStateKey splits a state key; tk is its time-key part.
func parseStateKey(k []byte) (status, dest string, tk []byte, ok bool) {
	i := bytes.IndexByte(k, 0)
	if i < 0 {
		return "", "", nil, false
	}
	j := bytes.IndexByte(k[i+1:], 0)
	if j < 0 || len(k) <= i+1+j+1+8 {
		return "", "", nil, false
	}
	return string(k[:i]), string(k[i+1 : i+1+j]), k[i+1+j+1:], true
}

func hashKey(kind byte, parts ...string) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return append([]byte{kind}, h.Sum(nil)...)
}

// SubmissionKey is what the submission dedup keys on: site and submission
// id; nil without a submission id. The dedup keys are exported so the
// cluster engine keys exactly as one node does.
func SubmissionKey(l *lead.Lead) []byte {
	if l.SubmissionID == "" {
		return nil
	}
	return hashKey('s', l.Site, l.SubmissionID)
}

// ContactKey is what the contact dedup keys on: site, form and the contact
// normalised (E.164 phone, lower-case email).
func ContactKey(l *lead.Lead) []byte {
	c := strings.TrimSpace(l.Contact())
	if l.Phone != "" && !isE164(c) {
		// Capture normalises phones already; parsing again (libphonenumber,
		// inside the commit) is only for leads added in another form.
		c = lead.NormalizePhone(c, "")
	}
	if c == "" {
		return nil
	}
	return hashKey('c', l.Site, l.Form, c)
}

// DataKey is what a double submit shares beyond the contact: ContactKey's
// parts and the lead's name, email, comment, extra and CRM values, so a
// lead with the same contact as the first but other data can be found
// again when it is itself submitted twice.
func DataKey(l *lead.Lead) []byte {
	ck := ContactKey(l)
	if ck == nil {
		return nil
	}
	parts := []string{string(ck), strings.TrimSpace(l.Name), strings.ToLower(strings.TrimSpace(l.Email)), strings.TrimSpace(l.Comment)}
	for _, m := range []map[string]string{l.Extra, l.CRM} {
		parts = append(parts, "\x01")
		for _, k := range lead.SortedKeys(m) {
			if v := strings.TrimSpace(m[k]); v != "" {
				parts = append(parts, k, v)
			}
		}
	}
	return hashKey('d', parts...)
}

// isE164 reports whether s is "+" and 8 to 15 digits, the form
// lead.NormalizePhone gives.
func isE164(s string) bool {
	if len(s) < 9 || len(s) > 16 || s[0] != '+' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validID accepts what can be a key part: lead.NewID ids, or ids a
// caller chose (bounded, without NUL).
func validID(id string) bool {
	return id != "" && len(id) <= maxIDLen && !strings.ContainsRune(id, 0)
}

func validDest(name string) error {
	if name == "" || len(name) > 200 || strings.ContainsRune(name, 0) {
		return fmt.Errorf("queue: bad destination name %q", name)
	}
	return nil
}

// getJSON reads key into v; it reports found=false for a missing key.
func getJSON(tx *nutsdb.Tx, bucket string, key []byte, v any) (bool, error) {
	raw, err := tx.Get(bucket, key)
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("queue: decode %s record: %w", bucket, err)
	}
	return true, nil
}

func putJSON(tx *nutsdb.Tx, bucket string, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(bucket, key, raw, nutsdb.Persistent)
}

func isNotFound(err error) bool {
	return errors.Is(err, nutsdb.ErrKeyNotFound) || errors.Is(err, nutsdb.ErrNotFoundKey)
}

// del deletes key, a missing key being fine: the invariants say what should
// exist, and erasing must not stop at the first gap.
func del(tx *nutsdb.Tx, bucket string, key []byte) error {
	if err := tx.Delete(bucket, key); err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

// putDelivery writes a delivery's new state (nil erases it) and moves its
// state, due and lease keys to match: the only place the invariants above
// are maintained.
func putDelivery(tx *nutsdb.Tx, id, dest string, old, rec *deliveryRec) error {
	var o deliveryRec
	if old != nil {
		o = *old
	}
	var n deliveryRec
	if rec != nil {
		n = *rec
	}
	if o.Status != n.Status && o.Status != "" {
		if err := del(tx, bState, stateKey(o.Status, dest, o.At, id)); err != nil {
			return err
		}
	}
	if o.Due != n.Due && o.Due != 0 {
		if err := del(tx, bDue, dueKey(dest, o.Due, id)); err != nil {
			return err
		}
	}
	if (o.Lease != n.Lease || o.LeaseUntil != n.LeaseUntil) && o.Lease != "" {
		if err := del(tx, bLease, timedKey(o.LeaseUntil, dest, id)); err != nil {
			return err
		}
	}
	if rec == nil {
		return del(tx, bDelivery, deliveryKey(id, dest))
	}
	if n.Status != o.Status {
		if err := tx.Put(bState, stateKey(n.Status, dest, n.At, id), nil, nutsdb.Persistent); err != nil {
			return err
		}
	}
	if n.Due != o.Due && n.Due != 0 {
		if err := tx.Put(bDue, dueKey(dest, n.Due, id), nil, nutsdb.Persistent); err != nil {
			return err
		}
	}
	if (n.Lease != o.Lease || n.LeaseUntil != o.LeaseUntil) && n.Lease != "" {
		if err := tx.Put(bLease, timedKey(n.LeaseUntil, dest, id), []byte(n.Lease), nutsdb.Persistent); err != nil {
			return err
		}
	}
	return putJSON(tx, bDelivery, deliveryKey(id, dest), rec)
}
