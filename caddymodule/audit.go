package caddymodule

import (
	"bufio"
	"net"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/intercept"
)

// The form audit: handlers sample served pages into their auditor; the
// admin API lists every active handler's audit at /leadproxy/forms.

var auditors struct {
	sync.Mutex
	set map[*intercept.Auditor]bool
}

var formsFlagged = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "leadproxy_form_selector_flagged", Help: "1 when a form rule's selector matched nothing on sampled pages for the audit window.",
}, []string{"form", "role"})

func registerAuditor(a *intercept.Auditor) {
	auditors.Lock()
	defer auditors.Unlock()
	if auditors.set == nil {
		auditors.set = map[*intercept.Auditor]bool{}
	}
	auditors.set[a] = true
}

func unregisterAuditor(a *intercept.Auditor) {
	auditors.Lock()
	delete(auditors.set, a)
	auditors.Unlock()
	a.Close()
}

func formsReport() []intercept.SelectorAudit {
	auditors.Lock()
	list := make([]*intercept.Auditor, 0, len(auditors.set))
	for a := range auditors.set {
		list = append(list, a)
	}
	auditors.Unlock()
	out := []intercept.SelectorAudit{}
	for _, a := range list {
		out = append(out, a.Report()...)
	}
	return out
}

func newAuditor(rules []*intercept.Rule, logger *zap.Logger) *intercept.Auditor {
	return intercept.NewAuditor(rules, intercept.AuditConfig{OnFlag: func(s intercept.SelectorAudit) {
		formsFlagged.WithLabelValues(s.Form, s.Role).Set(1)
		logger.Warn("form selector matched nothing on sampled pages; leads from this form may be lost",
			zap.String("form", s.Form), zap.String("role", s.Role), zap.String("selector", s.Selector),
			zap.Time("last_match", s.LastMatch), zap.Int("pages_checked", s.Pages))
	}})
}

// sampler copies an HTML page (up to a limit) for the audit, off the
// response path: the copy is handed over when the response ends.
type sampler struct {
	http.ResponseWriter
	a      *intercept.Auditor
	path   string
	buf    []byte
	ct     string
	active bool
	done   bool
}

func (s *sampler) WriteHeader(code int) {
	if !s.done {
		ct := s.Header().Get("Content-Type")
		s.active = code == http.StatusOK && intercept.HTMLContentType(ct) && s.Header().Get("Content-Encoding") == ""
		s.ct = ct
		s.done = true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *sampler) Write(p []byte) (int, error) {
	if !s.done {
		s.WriteHeader(http.StatusOK)
	}
	if s.active {
		room := s.a.MaxPage() - len(s.buf)
		if room > 0 {
			s.buf = append(s.buf, p[:min(room, len(p))]...)
		}
	}
	return s.ResponseWriter.Write(p)
}

func (s *sampler) finish() {
	if s.active && len(s.buf) > 0 {
		s.a.Submit(s.path, s.ct, s.buf)
	}
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (s *sampler) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *sampler) Flush() {
	http.NewResponseController(s.ResponseWriter).Flush()
}

func (s *sampler) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(s.ResponseWriter).Hijack()
}
