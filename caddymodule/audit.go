package caddymodule

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"

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

// AuditOptions tune the form audit of one site.
type AuditOptions struct {
	// Off disables the audit.
	Off bool `json:"off,omitempty"`
	// Every is the least time between two samples of one path. Default 1m.
	Every caddy.Duration `json:"every,omitempty"`
	// FlagAfter: a selector that matched nothing on the pages sampled for
	// this long is flagged (admin API, metric, one log line). Default 24h.
	FlagAfter caddy.Duration `json:"flag_after,omitempty"`
	// MaxPage is the most bytes of a page copied for the audit. Default 512 KiB.
	MaxPage int `json:"max_page,omitempty"`
}

// newAuditor returns nil when the audit is off or there is nothing to audit.
func newAuditor(rules []*intercept.Rule, o *AuditOptions, logger *zap.Logger) *intercept.Auditor {
	if o == nil {
		o = &AuditOptions{}
	}
	if o.Off {
		return nil
	}
	return intercept.NewAuditor(rules, intercept.AuditConfig{
		Every:     time.Duration(o.Every),
		FlagAfter: time.Duration(o.FlagAfter),
		MaxPage:   o.MaxPage,
		OnFlag: func(s intercept.SelectorAudit) {
			formsFlagged.WithLabelValues(s.Form, s.Role).Set(1)
			logger.Warn("form selector matched nothing on sampled pages; leads from this form may be lost",
				zap.String("form", s.Form), zap.String("role", s.Role), zap.String("selector", s.Selector),
				zap.Time("last_match", s.LastMatch), zap.Int("pages_checked", s.Pages))
		},
		OnUnflag: func(s intercept.SelectorAudit) {
			formsFlagged.WithLabelValues(s.Form, s.Role).Set(0)
			logger.Info("form selector matches again", zap.String("form", s.Form), zap.String("role", s.Role),
				zap.String("path", s.LastPath))
		},
	})
}

// parseAudit reads "audit off" or an audit block.
func parseAudit(d *caddyfile.Dispenser) (*AuditOptions, error) {
	o := &AuditOptions{}
	if d.NextArg() {
		if d.Val() != "off" || d.NextArg() {
			return nil, d.Errf("audit: want \"audit off\" or a block with every, flag_after, max_page")
		}
		o.Off = true
		return o, nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var v string
		if !d.NextArg() {
			return nil, d.ArgErr()
		}
		v = d.Val()
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		switch opt {
		case "every", "flag_after":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return nil, d.Errf("audit: %s: %q is not a positive duration", opt, v)
			}
			if opt == "every" {
				o.Every = caddy.Duration(dur)
			} else {
				o.FlagAfter = caddy.Duration(dur)
			}
		case "max_page":
			n, err := humanize.ParseBytes(v)
			if err != nil || n == 0 || n > 64<<20 {
				return nil, d.Errf("audit: max_page: %q is not a size up to 64MiB (like 512KB)", v)
			}
			o.MaxPage = int(n)
		default:
			return nil, d.Errf("audit: unknown option %q (want every, flag_after, max_page)", opt)
		}
	}
	return o, nil
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
