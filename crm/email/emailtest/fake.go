// Package emailtest is an SMTP server for tests, in process: the real
// protocol from github.com/emersion/go-smtp, with TLS (implicit or
// STARTTLS) on a self-signed certificate made at start, AUTH PLAIN, and the messages it accepted kept raw. It renders crmtest faults
// as a mail server answers them (535, 550, 421, 451, a dropped connection).
package emailtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/leadproxy/leadproxy/crm/crmtest"
)

// The account the server accepts.
const (
	Username = "robot-login"
	From     = "alerts@example.com" // the sender the account may use
	Password = "smtp-Pa55word"
)

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte // as the client sent it, CRLF line ends
}

// Server is the SMTP server.
type Server struct {
	Addr     string // 127.0.0.1:<port>
	CAFile   string // the PEM of its self-signed certificate
	Implicit bool   // TLS from the first byte, else STARTTLS
	Faults   *crmtest.Faults
	Received crmtest.Log[Message]

	srv *smtp.Server
	ln  net.Listener
	mu  sync.Mutex
	// fault of each connection, taken when it is accepted (one message
	// per connection, as the destination sends).
	faults map[net.Conn]crmtest.Fault
}

// Start starts a server; dir holds its certificate.
func Start(dir string, implicit bool) (*Server, error) {
	cert, pemFile, err := selfSigned(dir)
	if err != nil {
		return nil, err
	}
	s := &Server{CAFile: pemFile, Implicit: implicit, Faults: &crmtest.Faults{}, faults: map[net.Conn]crmtest.Fault{}}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.Addr = ln.Addr().String()
	s.ln = &faultListener{Listener: ln, s: s}
	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.Domain = "mx.test"
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.MaxMessageBytes = 1 << 20
	s.srv.MaxRecipients = 50
	s.srv.ErrorLog = quiet{}
	var l net.Listener = s.ln
	if implicit {
		l = tls.NewListener(s.ln, tc)
	} else {
		s.srv.TLSConfig = tc
	}
	go s.srv.Serve(l)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	s.ln.Close() // Serve may not have taken the listener yet
	s.srv.Close()
}

// Caddyfile is the destination block's lines for this server.
func (s *Server) Caddyfile() string {
	mode := "starttls"
	if s.Implicit {
		mode = "implicit"
	}
	return "server " + s.Addr + "\ntls " + mode + "\nca_file " + s.CAFile +
		"\nusername " + Username + "\npassword " + Password +
		"\nfrom " + From + "\nto sales@example.com boss@example.com"
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}
func (quiet) Println(...any)        {}

// faultListener takes the next fault for each connection; a Reset closes
// it before the greeting.
type faultListener struct {
	net.Listener
	s *Server
}

func (l *faultListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		f := l.s.Faults.Next()
		if f == crmtest.Reset {
			c.Close()
			continue
		}
		l.s.mu.Lock()
		l.s.faults[c] = f
		l.s.mu.Unlock()
		return c, nil
	}
}

func (s *Server) faultOf(c net.Conn) crmtest.Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	return s.faults[c]
}

type session struct {
	s     *Server
	fault crmtest.Fault
	tls   func() bool
	auth  bool
	from  string
	to    []string
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	f := s.faultOf(c.Conn())
	if f == crmtest.Unavailable || f == crmtest.QueryLimit {
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service not available, closing transmission channel"}
	}
	return &session{s: s, fault: f, tls: func() bool { _, ok := c.TLSConnectionState(); return ok }}, nil
}

func (se *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (se *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if se.fault == crmtest.Unauthorized || user != Username || pass != Password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		se.auth = true
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	}
	return nil, smtp.ErrAuthUnsupported
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if !se.tls() {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	}
	if !se.auth {
		return smtp.ErrAuthRequired
	}
	if from != From {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address rejected: not owned by user"}
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch se.fault {
	case crmtest.Validation:
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Mailbox unavailable"}
	case crmtest.RateJSON, crmtest.RateHTML:
		return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Rate limit exceeded, try again later"}
	}
	if !strings.HasSuffix(to, "@example.com") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Mailbox unavailable"}
	}
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
	}
	switch se.fault {
	case crmtest.ServerError:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error in processing"}
	case crmtest.Slow:
		time.Sleep(se.s.Faults.SlowFor) // the client gives up first
	}
	se.s.Received.Add(Message{From: se.from, To: se.to, Data: buf.Bytes()})
	return nil
}

func (se *session) Reset()        { se.from, se.to = "", nil }
func (se *session) Logout() error { return nil }

// selfSigned makes a certificate for 127.0.0.1 and writes its PEM to dir.
func selfSigned(dir string) (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	file := filepath.Join(dir, "smtp-ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, "", err
	}
	if der == nil {
		return tls.Certificate{}, "", errors.New("no certificate")
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, file, nil
}
