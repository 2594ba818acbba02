package lead

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sender delivers a lead to one CRM and returns the id the CRM gave it.
// Every destination module implements it; the delivery engine calls it.
// Send must honour ctx and must not keep l after it returns.
type Sender interface {
	Send(ctx context.Context, l *Lead) (crmID string, err error)
}

// Rated is implemented by senders that know their CRM's documented rate
// limit: at most N requests per Per.
type Rated interface {
	DefaultRate() (n int, per time.Duration)
}

// SendError classifies a failed delivery once, at the CRM boundary.
// An error that is not a *SendError is treated as retryable (network).
type SendError struct {
	Permanent  bool          // validation, auth: retrying will not help
	RetryAfter time.Duration // the CRM's Retry-After, if it gave one
	Status     int           // HTTP status, 0 for network errors
	Msg        string        // the CRM's own message, shown on the lead
	Err        error
}

func (e *SendError) Error() string {
	s := e.Msg
	if e.Status != 0 {
		s = fmt.Sprintf("HTTP %d: %s", e.Status, e.Msg)
	}
	if e.Err != nil {
		if s == "" {
			return e.Err.Error()
		}
		return s + ": " + e.Err.Error()
	}
	return s
}

func (e *SendError) Unwrap() error { return e.Err }

// Permanent wraps a non-retryable failure.
func Permanent(status int, msg string) error {
	return &SendError{Permanent: true, Status: status, Msg: msg}
}

// Retryable wraps a failure worth retrying, after retryAfter if non-zero.
func Retryable(status int, msg string, retryAfter time.Duration) error {
	return &SendError{Status: status, Msg: msg, RetryAfter: retryAfter}
}

// IsPermanent reports whether err says retrying is pointless.
func IsPermanent(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Permanent
}

// HTTPStatusOf returns the CRM's HTTP status behind err, or 0.
func HTTPStatusOf(err error) int {
	var se *SendError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// RetryAfterOf returns the delay the CRM asked for, or 0.
func RetryAfterOf(err error) time.Duration {
	var se *SendError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
}

// Accounted is implemented by senders that know the account their CRM's
// rate limit counts (the amoCRM subdomain, the Bitrix24 portal, a
// webhook's host...), so destinations on one account share one limit.
// The key starts with the destination's type.
type Accounted interface {
	Account() string
}
