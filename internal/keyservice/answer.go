package keyservice

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// keyErrors are the errors of a key the request named, as the admin API
// and the console answer them. Each message is a format with one %s, the
// key's ID. A new sentinel error of the store is answered everywhere by
// adding it here.
var keyErrors = []struct {
	err     error
	status  int
	message string
}{
	{keystore.ErrNotFound, http.StatusNotFound, "no API key has ID %s"},
	{keystore.ErrRevoked, http.StatusConflict, "API key %s is revoked: a revoked key cannot be rotated"},
	{keystore.ErrReplaced, http.StatusConflict, "API key %s was already replaced by a rotation: rotate the key that replaced it"},
	{keystore.ErrExpired, http.StatusConflict, "API key %s is expired: an expired key cannot be rotated"},
}

// StoreUnavailable is the message of every error that means the store
// failed.
const StoreUnavailable = "key store unavailable"

// Answer says how err, returned by a Service method called for key id
// ("" for none), is answered: the HTTP status, the input field at fault
// ("" when none) and a message without the field's name, to show and to
// log. The message never repeats input beyond apikey.MaxEcho bytes (the
// validations quote input with apikey.QuoteInput) or a malformed ID (the
// service refuses one before the store can answer "not found").
//
// Bad input is 400, a key not found 404, a key that cannot be rotated 409,
// and anything else means the store failed: 503, as a retry may succeed.
// The cause of a 503 is left out of the message: the admin API adds it for
// the operator, and the console only says to try again.
func Answer(err error, id string) (status int, field, message string) {
	if in, ok := errors.AsType[*InputError](err); ok {
		return http.StatusBadRequest, in.Field, in.Message
	}
	if !apikey.ValidID(id) {
		id = "(not a key ID)"
	}
	for _, ke := range keyErrors {
		if errors.Is(err, ke.err) {
			return ke.status, "", fmt.Sprintf(ke.message, id)
		}
	}
	return http.StatusServiceUnavailable, "", StoreUnavailable
}
