package keyservice_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/metrics"
)

const someID = "key_0123456789ABCDEFabcdef"

func TestAnswerMapsEveryServiceError(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		id          string
		wantStatus  int
		wantField   string
		wantMessage string
	}{
		{"input error", &keyservice.InputError{Field: "scope", Message: "unknown scope"}, "", 400, "scope", "unknown scope"},
		{"wrapped input error", fmt.Errorf("x: %w", &keyservice.InputError{Field: "grace", Message: "too long"}), someID, 400, "grace", "too long"},
		{"not found", fmt.Errorf("getting key %s: %w", someID, keystore.ErrNotFound), someID, 404, "", "no API key has ID " + someID},
		{"revoked", fmt.Errorf("rotating: %w", keystore.ErrRevoked), someID, 409, "", "API key " + someID + " is revoked: a revoked key cannot be rotated or changed"},
		{"replaced", fmt.Errorf("rotating: %w", keystore.ErrReplaced), someID, 409, "", "API key " + someID + " was already replaced by a rotation: rotate the key that replaced it"},
		{"expired", fmt.Errorf("rotating: %w", keystore.ErrExpired), someID, 409, "", "API key " + someID + " is expired: an expired key cannot be rotated"},
		{"not found for a malformed ID", keystore.ErrNotFound, "dk_0123456789abcdefghij", 404, "", "no API key has ID (not a key ID)"},
		{"store closed", keystore.ErrClosed, someID, 503, "", "key store unavailable"},
		{"store down", errors.New("dial tcp: connection refused"), "", 503, "", "key store unavailable"},
		{"cancelled", context.Canceled, "", 503, "", "key store unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, field, msg := keyservice.Answer(tt.err, tt.id)
			if status != tt.wantStatus || field != tt.wantField || msg != tt.wantMessage {
				t.Errorf("Answer = %d, %q, %q; want %d, %q, %q", status, field, msg, tt.wantStatus, tt.wantField, tt.wantMessage)
			}
		})
	}
}

func TestAnswersOfRealCallsEchoAtMost12Bytes(t *testing.T) {
	f := newFixture(t)
	secret, _ := f.create(t, "real", "full", "1d")
	ctx := context.Background()
	calls := map[string]func() error{
		"create with the key as scope": func() error {
			_, _, err := f.svc.Create(ctx, keyservice.NewKey{Name: "x", Scope: secret, ExpiresIn: "1d", CreatedBy: admin})
			return err
		},
		"create with the key as expiry": func() error {
			_, _, err := f.svc.Create(ctx, keyservice.NewKey{Name: "x", Scope: "full", ExpiresIn: secret, CreatedBy: admin})
			return err
		},
		"create with the key as an allowed origin": func() error {
			_, _, err := f.svc.Create(ctx, keyservice.NewKey{Name: "x", Scope: "widget", ExpiresIn: "1d", CreatedBy: admin,
				AllowedOrigins: []string{secret}})
			return err
		},
		"create with the key as an allowed IP": func() error {
			_, _, err := f.svc.Create(ctx, keyservice.NewKey{Name: "x", Scope: "widget", ExpiresIn: "1d", CreatedBy: admin,
				AllowedIPs: []string{secret}})
			return err
		},
		"update with the key in an allowed origin": func() error {
			_, k := f.create(t, "to update", "full", "1d")
			origins := []string{"https://" + secret}
			_, err := f.svc.Update(ctx, k.ID, keyservice.KeyUpdate{AllowedOrigins: &origins})
			return err
		},
		"list with the key as status": func() error {
			_, err := f.svc.List(ctx, keyservice.ListOptions{Status: secret})
			return err
		},
		"revoke with the key as ID": func() error {
			_, err := f.svc.Revoke(ctx, secret)
			return err
		},
		"rotate with the key as grace": func() error {
			_, k := f.create(t, "to rotate", "full", "1d")
			_, _, _, err := f.svc.Rotate(ctx, k.ID, secret)
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			status, _, msg := keyservice.Answer(call(), secret)
			if status != http.StatusBadRequest {
				t.Errorf("status %d, want 400", status)
			}
			if strings.Contains(msg, secret[:apikey.MaxEcho+1]) {
				t.Errorf("message %q holds more than %d bytes of the key", msg, apikey.MaxEcho)
			}
		})
	}
}

func TestStoreFailuresAreCountedByOperation(t *testing.T) {
	f := newFixture(t)
	_, revoked := f.create(t, "revoked", "full", "1d")
	if _, err := f.svc.Revoke(context.Background(), revoked.ID); err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	f.svc.CountStoreErrors(m.StoreErrors)
	ctx := context.Background()
	errorsOf := func(op string) float64 { return testutil.ToFloat64(m.StoreErrors.WithLabelValues(op)) }

	// Refusals that are not the store's fault count nothing.
	_, _, _ = f.svc.Create(ctx, keyservice.NewKey{Name: "", Scope: "full", ExpiresIn: "1d", CreatedBy: admin})
	_, _, _ = f.svc.Create(ctx, keyservice.NewKey{Name: "x", Scope: "admin", ExpiresIn: "1d", CreatedBy: admin})
	_, _ = f.svc.List(ctx, keyservice.ListOptions{Status: "gone"})
	_, _ = f.svc.Get(ctx, someID)
	_, _ = f.svc.Revoke(ctx, someID)
	_, _, _, _ = f.svc.Rotate(ctx, revoked.ID, "")
	_, _, _, _ = f.svc.Rotate(ctx, someID, "1h")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _ = f.svc.List(cancelled, keyservice.ListOptions{})
	for _, op := range []string{metrics.OpCreate, metrics.OpList, metrics.OpGet, metrics.OpRevoke, metrics.OpRotate, metrics.OpUpdate} {
		if got := errorsOf(op); got != 0 {
			t.Errorf("store errors{op=%s} after refusals: got %v, want 0", op, got)
		}
	}

	// With the store closed, each call is one error of its operation.
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		op   string
		call func() error
	}{
		{metrics.OpCreate, func() error {
			_, _, err := f.svc.Create(ctx, keyservice.NewKey{Name: "x", Scope: "full", ExpiresIn: "1d", CreatedBy: admin})
			return err
		}},
		{metrics.OpList, func() error { _, err := f.svc.List(ctx, keyservice.ListOptions{}); return err }},
		{metrics.OpGet, func() error { _, err := f.svc.Get(ctx, someID); return err }},
		{metrics.OpRevoke, func() error { _, err := f.svc.Revoke(ctx, someID); return err }},
		{metrics.OpRotate, func() error { _, _, _, err := f.svc.Rotate(ctx, someID, ""); return err }},
		{metrics.OpUpdate, func() error {
			name := "x"
			_, err := f.svc.Update(ctx, someID, keyservice.KeyUpdate{Name: &name})
			return err
		}},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, keystore.ErrClosed) {
			t.Errorf("%s on a closed store: got %v, want ErrClosed", c.op, err)
		}
		if got := errorsOf(c.op); got != 1 {
			t.Errorf("store errors{op=%s}: got %v, want 1", c.op, got)
		}
	}
}
