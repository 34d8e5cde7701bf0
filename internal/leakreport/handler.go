package leakreport

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
)

// Labels of a token in the answer, as GitHub's partner program defines
// them.
const (
	LabelTruePositive  = "true_positive"
	LabelFalsePositive = "false_positive"
)

// Error codes of a refused report, in the JSON error body.
const (
	CodeMethod            = "method_not_allowed"
	CodeMediaType         = "unsupported_media_type"
	CodeTooLarge          = "report_too_large"
	CodeUnreadable        = "unreadable_body"
	CodeMissingSignature  = "missing_signature"
	CodeMalformedSig      = "malformed_signature"
	CodeUnknownKey        = "unknown_key_identifier"
	CodeInvalidSignature  = "invalid_signature"
	CodeKeysUnavailable   = "public_keys_unavailable"
	CodeMalformedReport   = "malformed_report"
	CodeTooManyTokens     = "too_many_tokens"
	CodeStoreUnavailable  = "key_store_unavailable"
	reportTimeout         = 30 * time.Second
	retryAfterUnavailable = 60
)

// Reporter is what the handler needs of the key service.
type Reporter interface {
	ReportLeak(ctx context.Context, d apikey.Digest, l keyservice.Leak) (keyservice.LeakOutcome, error)
}

// Config configures a Handler.
type Config struct {
	// Keys verifies the reports' signatures.
	Keys *KeySet
	// Format tells keys from garbage without a lookup.
	Format *apikey.Format
	// Service records each leaked key and revokes it.
	Service Reporter
	// Revoke is action revoke (true) or report (false).
	Revoke bool
	// Labels counts answered tokens by label
	// (caddy_apikey_leak_reports_total); nil counts nothing.
	Labels *prometheus.CounterVec
	// Logger; default none.
	Logger *zap.Logger
}

// Handler is the endpoint of GitHub's secret scanning partner program: it
// answers a signed POST of a JSON array of tokens with a label per token,
// after reporting each known key to the key service (which revokes it
// with action revoke). Anything else gets a 4xx JSON error and changes
// nothing.
type Handler struct {
	keys    *KeySet
	format  *apikey.Format
	service Reporter
	revoke  bool
	logger  *zap.Logger

	truePositive, falsePositive prometheus.Counter
}

// New returns a handler over cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Keys == nil || cfg.Format == nil || cfg.Service == nil {
		return nil, errors.New("leakreport: Keys, Format and Service are required")
	}
	h := &Handler{keys: cfg.Keys, format: cfg.Format, service: cfg.Service, revoke: cfg.Revoke, logger: cfg.Logger}
	if h.logger == nil {
		h.logger = zap.NewNop()
	}
	if cfg.Labels != nil {
		h.truePositive = cfg.Labels.WithLabelValues(LabelTruePositive)
		h.falsePositive = cfg.Labels.WithLabelValues(LabelFalsePositive)
	}
	return h, nil
}

// Result is the answer for one token, in GitHub's feedback format.
type Result struct {
	// TokenHash is the hex SHA-256 of the token: the token itself is never
	// sent back.
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

// ServeHTTP handles one report.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, r, http.StatusMethodNotAllowed, CodeMethod, "leak reports are sent with POST")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		h.fail(w, r, http.StatusUnsupportedMediaType, CodeMediaType, "a leak report is sent as Content-Type: application/json")
		return
	}
	tooLarge := "a leak report is at most " + strconv.Itoa(MaxBodySize>>20) + " MiB"
	if r.ContentLength > MaxBodySize {
		h.fail(w, r, http.StatusRequestEntityTooLarge, CodeTooLarge, tooLarge)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodySize+1))
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, CodeUnreadable, "the report's body could not be read")
		return
	}
	if len(body) > MaxBodySize {
		h.fail(w, r, http.StatusRequestEntityTooLarge, CodeTooLarge, tooLarge)
		return
	}
	id, sig, err := signatureHeaders(r.Header)
	if err == nil {
		err = h.keys.Verify(r.Context(), body, id, sig)
	}
	if err != nil {
		h.failVerify(w, r, err)
		return
	}
	tokens, err := Parse(body)
	if errors.Is(err, ErrTooManyTokens) {
		h.fail(w, r, http.StatusRequestEntityTooLarge, CodeTooManyTokens, err.Error())
		return
	}
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, CodeMalformedReport, err.Error())
		return
	}
	// A report is handled whole even if GitHub gives up waiting: a key
	// found in public must not stay active because a connection dropped.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), reportTimeout)
	defer cancel()
	results, truePositives, err := h.handle(ctx, tokens)
	if err != nil {
		h.logger.Error("leak report: the key store failed; the sender will retry", zap.Int("tokens", len(tokens)), zap.Error(err))
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterUnavailable))
		h.fail(w, r, http.StatusServiceUnavailable, CodeStoreUnavailable, "the key store is unavailable; send the report again later")
		return
	}
	if h.truePositive != nil {
		h.truePositive.Add(float64(truePositives))
		h.falsePositive.Add(float64(len(results) - truePositives))
	}
	h.logger.Info("leak report answered",
		zap.String("key_identifier", id),
		zap.Int("tokens", len(results)),
		zap.Int("true_positive", truePositives),
		zap.Int("false_positive", len(results)-truePositives))
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(results) // strings only: always encodes
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}

// handle reports every token and returns the answer, in input order, and
// how many were true positives. A token repeated in a report is reported
// once. An error means the store failed: tokens before it may have been
// reported, and reporting them again changes nothing more.
func (h *Handler) handle(ctx context.Context, tokens []Token) ([]Result, int, error) {
	results := make([]Result, len(tokens))
	labels := make(map[apikey.Digest]string, len(tokens))
	truePositives := 0
	for i, t := range tokens {
		d := apikey.DigestOf(t.Token)
		label, seen := labels[d]
		if !seen {
			var err error
			if label, err = h.label(ctx, t, d); err != nil {
				return nil, 0, err
			}
			labels[d] = label
		}
		if label == LabelTruePositive {
			truePositives++
		}
		results[i] = Result{TokenHash: hex.EncodeToString(d[:]), TokenType: t.Type, Label: label}
	}
	return results, truePositives, nil
}

// label reports the token t, of digest d, and returns its label: a
// malformed key (wrong prefix, length, alphabet or checksum) or an unknown
// one is a false positive; a known key, whatever its state, a true one.
func (h *Handler) label(ctx context.Context, t Token, d apikey.Digest) (string, error) {
	if h.format.Check(t.Token) != nil {
		h.logger.Debug("leak report: not a key of this gateway", zap.String("token_hash", d.String()))
		return LabelFalsePositive, nil
	}
	out, err := h.service.ReportLeak(ctx, d, keyservice.Leak{URL: t.URL, Source: t.Source, Revoke: h.revoke})
	if errors.Is(err, keystore.ErrNotFound) {
		h.logger.Debug("leak report: no such key", zap.String("token_hash", d.String()))
		return LabelFalsePositive, nil
	}
	if err != nil {
		return "", err
	}
	h.logger.Info("leaked key reported",
		zap.String("key_id", out.Key.ID),
		zap.String("hint", out.Key.Hint),
		zap.String("action_taken", out.ActionTaken),
		zap.String("url", t.URL),
		zap.String("source", t.Source))
	return LabelTruePositive, nil
}

// signatureHeaders returns the key identifier and signature headers, each
// given at most once.
func signatureHeaders(hdr http.Header) (id, sig string, err error) {
	ids, sigs := hdr.Values("Github-Public-Key-Identifier"), hdr.Values("Github-Public-Key-Signature")
	if len(ids) > 1 || len(sigs) > 1 {
		return "", "", fmt.Errorf("%w: a signature header is given more than once", ErrMalformedSignature)
	}
	if len(ids) == 1 {
		id = ids[0]
	}
	if len(sigs) == 1 {
		sig = sigs[0]
	}
	return id, sig, nil
}

// failVerify answers a report whose signature was refused.
func (h *Handler) failVerify(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrMissingSignature):
		h.fail(w, r, http.StatusBadRequest, CodeMissingSignature, err.Error())
	case errors.Is(err, ErrMalformedSignature):
		h.fail(w, r, http.StatusBadRequest, CodeMalformedSig, err.Error())
	case errors.Is(err, ErrUnknownKey):
		h.fail(w, r, http.StatusForbidden, CodeUnknownKey, err.Error())
	case errors.Is(err, ErrBadSignature):
		h.fail(w, r, http.StatusForbidden, CodeInvalidSignature, err.Error())
	case errors.Is(err, ErrKeysUnavailable):
		h.logger.Error("leak report refused: no public keys to verify it", zap.Error(err))
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterUnavailable))
		h.fail(w, r, http.StatusServiceUnavailable, CodeKeysUnavailable, err.Error())
	default: // the request's context ended while waiting for a fetch
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterUnavailable))
		h.fail(w, r, http.StatusServiceUnavailable, CodeKeysUnavailable, "the public keys could not be fetched in time")
	}
}

// fail answers {"error": {"code", "message"}} with status. Messages never
// hold a token: they come from the checks above, which quote at most
// apikey.MaxEcho bytes of a header.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	h.logger.Debug("leak report refused", zap.Int("status", status), zap.String("code", code), zap.String("remote_addr", r.RemoteAddr))
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	e.Error.Code, e.Error.Message = code, msg
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
