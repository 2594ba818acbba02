// Package email is the destination that alerts by email of a new lead:
// SMTP through github.com/wneessen/go-mail, with implicit TLS (port 465)
// or STARTTLS (required, never downgraded), optional auth, one or more
// recipients, and a multipart/alternative message whose plain-text and HTML
// parts are rendered from the same template (crm/leadtext).
//
// Headers hold no raw lead value but the subject (rendered, with CR, LF and
// other control characters folded to spaces, then MIME-encoded) and a
// Reply-To that is the visitor's email only when it parses as one address.
// Message-ID is <lead id>@leadproxy, the same on every retry.
//
// Answers: 2xx delivered; an SMTP 4xx, a network error or a timeout is
// retried; a 5xx (535 auth failed, 550 no such mailbox, 554 refused) is
// permanent.
package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	gomail "github.com/wneessen/go-mail"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/leadtext"
	"github.com/leadproxy/leadproxy/lead"
)

// DefaultSubject is the subject when the block sets none.
const DefaultSubject = "Новая заявка: {lead.form}"

func init() { caddy.RegisterModule(Email{}) }

// Email sends lead alerts by SMTP.
type Email struct {
	crm.Common
	// Server is the SMTP server, "<host>:<port>". Required.
	Server string `json:"server,omitempty"`
	// TLS is "implicit" or "starttls"; default implicit on port 465, else
	// starttls. Plain SMTP is not offered.
	TLS string `json:"tls,omitempty"`
	// Username and Password authenticate (PLAIN, else LOGIN, as the server
	// offers). Use placeholders.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// From is the sender. Required.
	From string `json:"from,omitempty"`
	// To are the recipients. Required.
	To []string `json:"to,omitempty"`
	// Subject and Template are in the alert template syntax.
	Subject  string `json:"subject,omitempty"`
	Template string `json:"template,omitempty"`
	// CAFile is a PEM file of CAs to trust instead of the system's.
	CAFile string `json:"ca_file,omitempty"`

	username, password string
	host               string
	port               int
	tlsConfig          *tls.Config
	subject, body      *leadtext.Template
}

// CaddyModule returns the Caddy module information.
func (Email) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: crm.Namespace + ".email", New: func() caddy.Module { return new(Email) }}
}

// Provision resolves the secrets and checks the options.
func (e *Email) Provision(caddy.Context) error {
	if err := e.Spec().Resolve(); err != nil {
		return err
	}
	if err := e.Common.Provision(""); err != nil {
		return fmt.Errorf("email: %w", err)
	}
	if _, err := checkServer(e.Server); err != nil {
		return fmt.Errorf("email: server: %w", err)
	}
	host, port, _ := net.SplitHostPort(e.Server)
	e.host = host
	e.port, _ = strconv.Atoi(port)
	switch e.TLS {
	case "", "implicit", "starttls":
	default:
		return fmt.Errorf("email: tls: want implicit or starttls, got %q", e.TLS)
	}
	if (e.username == "") != (e.password == "") {
		return errors.New("email: username and password go together")
	}
	for _, a := range append([]string{e.From}, e.To...) {
		if _, err := checkAddress(a); err != nil {
			return fmt.Errorf("email: %w", err)
		}
	}
	e.tlsConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return fmt.Errorf("email: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("email: ca_file %s: no PEM certificate in it", e.CAFile)
		}
		e.tlsConfig.RootCAs = pool
	}
	var err error
	subject := e.Subject
	if subject == "" {
		subject = DefaultSubject
	}
	if e.subject, err = leadtext.Parse(subject); err != nil {
		return fmt.Errorf("email: subject: %w", err)
	}
	if e.body, err = leadtext.Parse(e.Template); err != nil {
		return fmt.Errorf("email: %w", err)
	}
	return nil
}

// Account is the SMTP login (server and username; the server alone
// without one): providers limit messages per login.
func (e *Email) Account() string {
	if e.username == "" {
		return crm.AccountKey("email", e.Server)
	}
	return crm.AccountKey("email", e.Server, e.username)
}

// DefaultRate: one message a second keeps within what mail providers let
// one mailbox send.
func (e *Email) DefaultRate() (int, time.Duration) { return e.RateOr(1, time.Second, 1) }

func (e *Email) implicit() bool { return e.TLS == "implicit" || (e.TLS == "" && e.port == 465) }

var controls = regexp.MustCompile(`[\x00-\x1f\x7f\x{2028}\x{2029}]+`)

// oneLine folds CR, LF and other control characters to a space: a header
// value from a lead can never start a new header.
func oneLine(s string) string { return strings.TrimSpace(controls.ReplaceAllString(s, " ")) }

// ReplyTo is the visitor's address when the lead's email is exactly one
// valid address, else "".
func ReplyTo(l *lead.Lead) string {
	if l.Email == "" || controls.MatchString(l.Email) {
		return ""
	}
	a, err := mail.ParseAddress(l.Email)
	if err != nil || a.Name != "" || a.Address != strings.TrimSpace(l.Email) {
		return ""
	}
	return a.Address
}

// Build is the message Send sends for l.
func (e *Email) Build(l *lead.Lead) (*gomail.Msg, error) {
	m := gomail.NewMsg(gomail.WithNoDefaultUserAgent(), gomail.WithBoundary("leadproxy-"+l.ID),
		gomail.WithEncoding(gomail.EncodingQP))
	if err := m.From(e.From); err != nil {
		return nil, lead.Permanent(0, "from: "+err.Error())
	}
	if err := m.To(e.To...); err != nil {
		return nil, lead.Permanent(0, "to: "+err.Error())
	}
	if r := ReplyTo(l); r != "" {
		if err := m.ReplyTo(r); err != nil {
			return nil, lead.Permanent(0, "reply-to: "+err.Error())
		}
	}
	m.Subject(oneLine(e.subject.Text(l)))
	m.SetMessageIDWithValue(l.ID + "@leadproxy")
	date := l.CreatedAt
	if date.IsZero() {
		date = time.Now()
	}
	m.SetDateWithValue(date.UTC())
	m.SetUserAgent("leadproxy")
	m.SetBodyString(gomail.TypeTextPlain, e.body.Text(l))
	m.AddAlternativeString(gomail.TypeTextHTML, "<!DOCTYPE html>\n<html><body>\n"+e.body.HTMLBody(l)+"\n</body></html>\n")
	return m, nil
}

// Send sends the alert; the crm_id is the Message-ID.
func (e *Email) Send(ctx context.Context, l *lead.Lead) (string, error) {
	m, err := e.Build(l)
	if err != nil {
		return "", fmt.Errorf("email: %w", err)
	}
	timeout := time.Duration(e.Timeout)
	if timeout <= 0 {
		timeout = crm.DefaultTimeout
	}
	opts := []gomail.Option{gomail.WithPort(e.port), gomail.WithTimeout(timeout),
		gomail.WithTLSConfig(e.tlsConfig), gomail.WithHELO("leadproxy")}
	if e.implicit() {
		opts = append(opts, gomail.WithSSL())
	} else {
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if e.username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(e.username), gomail.WithPassword(e.password))
	}
	c, err := gomail.NewClient(e.host, opts...)
	if err != nil {
		return "", fmt.Errorf("email: %w", lead.Permanent(0, err.Error()))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.DialAndSendWithContext(ctx, m); err != nil {
		return "", fmt.Errorf("email: %w", crm.Redact(classify(err), e.password, e.username))
	}
	return "<" + l.ID + "@leadproxy>", nil
}

// Preview is what Send would send for l (the dry run): the message Build
// makes, as go-mail writes it to the server, with the envelope as headers.
func (e *Email) Preview(_ context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	m, err := e.Build(l)
	if err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	var b strings.Builder
	if _, err := m.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("email: %w", lead.Permanent(0, err.Error()))
	}
	scheme := "smtp"
	if e.implicit() {
		scheme = "smtps"
	}
	return []crm.PreviewRequest{{Method: "SMTP", URL: scheme + "://" + net.JoinHostPort(e.host, strconv.Itoa(e.port)),
		Header: map[string][]string{"MAIL FROM": {e.From}, "RCPT TO": e.To}, Body: b.String()}}, nil
}

var smtpCode = regexp.MustCompile(`\b([245])([0-9]{2}) `)

// classify reads the SMTP reply code behind err: 5xx permanent, anything
// else (4xx, network, timeout) retried.
func classify(err error) error {
	code := 0
	var te *textproto.Error
	var se *gomail.SendError
	switch {
	case errors.As(err, &te):
		code = te.Code
	case errors.As(err, &se) && se.ErrorCode() != 0:
		code = se.ErrorCode()
	default:
		if m := smtpCode.FindStringSubmatch(err.Error()); m != nil {
			code, _ = strconv.Atoi(m[1] + m[2])
		}
	}
	msg := oneLine(err.Error())
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	if code >= 500 {
		return &lead.SendError{Permanent: true, Msg: msg} // Status is an HTTP status; the SMTP code is in msg
	}
	return &lead.SendError{Msg: msg, Err: err}
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Email)(nil)
	_ caddyfile.Unmarshaler = (*Email)(nil)
	_ lead.Sender           = (*Email)(nil)
	_ lead.Rated            = (*Email)(nil)
)
