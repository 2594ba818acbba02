// Package lead holds the lead record shared by capture, the queue and the CRM
// destinations, and the small contract between the queue and a destination.
//
// The JSON form of Lead is the one the admin API returns and the webhook
// destination sends (the admin API's and the webhook's lead JSON): UTF-8, absent values omitted.
package lead

import (
	"crypto/rand"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Mechanisms: how a lead was seen.
const (
	MechSubmit = "submit" // classic <form> submit, marked by the capture script
	MechClick  = "click"  // AJAX form triggered by a button, marked by the script
	MechPost   = "post"   // server-side rule: a POST to a path carrying required fields
	MechAuto   = "auto"   // any form with an email or phone field (auto on)
	MechAPI    = "api"    // the Roistat-compatible manual API
)

// Delivery statuses.
const (
	StatusPending   = "pending"   // not tried yet
	StatusRetrying  = "retrying"  // tried, failed, will be tried again
	StatusDelivered = "delivered" // the CRM accepted it
	StatusFailed    = "failed"    // permanent error or retry_for exhausted; re-sendable
	StatusSkipped   = "skipped"   // nothing to send (is_skip_sending, no destination)
	// StatusDryRun: captured under dry_run; held with a preview of what
	// would be sent, never sent until resent after dry_run is off.
	StatusDryRun = "dry_run"
)

// Lead is one captured submission.
type Lead struct {
	ID           string            `json:"id"`
	CreatedAt    time.Time         `json:"created_at"`
	Site         string            `json:"site,omitempty"`
	Form         string            `json:"form,omitempty"`
	Title        string            `json:"title,omitempty"`
	Mechanism    string            `json:"mechanism,omitempty"`
	SubmissionID string            `json:"submission_id,omitempty"`
	Name         string            `json:"name,omitempty"`
	Phone        string            `json:"phone,omitempty"`
	Email        string            `json:"email,omitempty"`
	Comment      string            `json:"comment,omitempty"`
	Extra        map[string]string `json:"extra,omitempty"`
	CRM          map[string]string `json:"crm,omitempty"`
	Fields       map[string]string `json:"fields,omitempty"`
	Visit        *Visit            `json:"visit,omitempty"`
	// DuplicateOf names the first lead when this one was seen again inside
	// dedup_window with nothing the first lacks; such a lead is kept for
	// the record but not delivered.
	DuplicateOf string `json:"duplicate_of,omitempty"`
	// SameContactAs names the first lead of this contact (form, phone or
	// email) inside dedup_window when this one carries other data: it is
	// kept and delivered as its own lead, never dropped, so a forged lead
	// with a visitor's phone cannot swallow the visitor's real one.
	SameContactAs string `json:"same_contact_as,omitempty"`
	// Dedup says what dedup did: DedupDuplicate, DedupSameContact, or
	// DedupMerged (another report of this submission was merged in).
	Dedup string `json:"dedup,omitempty"`
	// Callback is set by the Roistat API's is_need_callback / callback_phone.
	Callback   *Callback  `json:"callback,omitempty"`
	Deliveries []Delivery `json:"deliveries,omitempty"`
	// Traceparent links delivery spans to the capture's trace (W3C format).
	Traceparent string `json:"traceparent,omitempty"`
}

// What dedup did with a lead (Lead.Dedup).
const (
	DedupDuplicate   = "duplicate"    // same contact and nothing new: kept, not sent
	DedupSameContact = "same_contact" // same contact, other data: kept and sent, linked
	DedupMerged      = "merged"       // another report of the same submission merged in
)

// Visit is the lead's attribution: the visit the proxy recorded (the
// roistat_visit cookie, or the API's roistat parameter) and what the
// capture script kept for the visitor.
type Visit struct {
	ID        string            `json:"id,omitempty"`
	Page      string            `json:"page,omitempty"`
	Landing   string            `json:"landing,omitempty"`
	Referrer  string            `json:"referrer,omitempty"`
	UTM       map[string]string `json:"utm,omitempty"`
	IP        string            `json:"ip,omitempty"`
	UserAgent string            `json:"user_agent,omitempty"`

	// Clicks are the ad click ids of the landing URL (yclid, gclid, fbclid).
	Clicks map[string]string `json:"clicks,omitempty"`
	// Source is the class of the visit's source: ads, organic, social,
	// referral, direct or email (docs/visits.md).
	Source string `json:"source,omitempty"`
}

// Callback is a request to call the visitor back (Roistat API).
type Callback struct {
	Phone string `json:"phone,omitempty"`
}

// Delivery is the state of a lead for one destination.
type Delivery struct {
	Destination string     `json:"destination"`
	Status      string     `json:"status"`
	Attempts    int        `json:"attempts"`
	NextAt      *time.Time `json:"next_at,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	CRMID       string     `json:"crm_id,omitempty"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	// Preview is what a dry_run delivery would send: each request, secrets
	// masked (crm.Preview). Empty for a delivery that is not held.
	Preview []Request `json:"preview,omitempty"`
	// History is the delivery's last attempts, oldest first, for the
	// dashboard. It is not part of the lead's JSON.
	History []Attempt `json:"-"`
}

// Attempt is one delivery attempt: when, how long, and what came of it
// (delivered, retry or failed). It holds no error text: the delivery's
// LastError has the latest.
type Attempt struct {
	At         time.Time
	Took       time.Duration
	Outcome    string
	HTTPStatus int
	CRMID      string
}

// Request is one request a destination would make, as a dry run shows it:
// method, URL, headers and body exactly as they would go out, with secrets
// (tokens, keys, passwords, signatures) replaced by "***". An email is one
// request with method "SMTP", the server as URL, the envelope as headers
// (MAIL FROM, RCPT TO) and the message as body.
type Request struct {
	Method string              `json:"method"`
	URL    string              `json:"url"`
	Header map[string][]string `json:"header,omitempty"`
	Body   string              `json:"body,omitempty"`
}

// Delivery returns the delivery for dest, or nil.
func (l *Lead) Delivery(dest string) *Delivery {
	for i := range l.Deliveries {
		if l.Deliveries[i].Destination == dest {
			return &l.Deliveries[i]
		}
	}
	return nil
}

// Status summarises the deliveries: the least advanced one wins, so a lead
// is "delivered" only when every destination has it.
func (l *Lead) Status() string {
	if len(l.Deliveries) == 0 {
		return StatusSkipped
	}
	best := StatusSkipped
	for _, d := range l.Deliveries {
		if StatusRank(d.Status) < StatusRank(best) {
			best = d.Status
		}
	}
	return best
}

// StatusRank orders delivery statuses from the least advanced (dry_run:
// held, never sent) to skipped, for a lead's summary status.
func StatusRank(status string) int {
	switch status {
	case StatusDryRun:
		return -1
	case StatusFailed:
		return 0
	case StatusRetrying:
		return 1
	case StatusPending:
		return 2
	case StatusDelivered:
		return 3
	}
	return 4
}

// Contact is the lead's phone, else its email: what dedup and lists key on.
func (l *Lead) Contact() string {
	if l.Phone != "" {
		return l.Phone
	}
	return strings.ToLower(l.Email)
}

// SortedKeys returns m's keys in order, for stable comments and tests.
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Summary renders the lead's comment, extra fields and attribution as the
// plain text that CRMs without structured fields take as a note.
func (l *Lead) Summary() string {
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(v)
			b.WriteByte('\n')
		}
	}
	if l.Comment != "" {
		b.WriteString(l.Comment)
		b.WriteByte('\n')
	}
	for _, k := range SortedKeys(l.Extra) {
		line(k, l.Extra[k])
	}
	line("Форма", l.Form)
	if v := l.Visit; v != nil {
		line("Страница", v.Page)
		line("Первая страница", v.Landing)
		line("Источник", v.Referrer)
		line("Канал", v.Source)
		for _, k := range SortedKeys(v.UTM) {
			line("utm_"+k, v.UTM[k])
		}
		line("Визит", v.ID)
	}
	return strings.TrimRight(b.String(), "\n")
}

var (
	idMu      sync.Mutex
	idEntropy = ulid.Monotonic(rand.Reader, 0)
)

// NewID returns a ULID: 26 Crockford base32 characters, 48 bits of Unix
// milliseconds then 80 random bits, monotonic within one millisecond of this
// process. Lexical order is creation order, which the store's keys rely on.
func NewID(now time.Time) string {
	idMu.Lock()
	defer idMu.Unlock()
	return ulid.MustNew(ulid.Timestamp(now), idEntropy).String()
}
