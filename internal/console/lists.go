package console

import (
	"errors"
	"fmt"
	"strings"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/policy"
	"github.com/docana/keygate/internal/ratelimit"
)

// The create and edit dialogs take a key's allowed origins and allowed IPs
// as text, one entry per line, so that they work as plain HTML forms. Each
// line is checked here, with the rules the key service applies
// (policy.NormalizeOrigin, policy.NormalizeIP), so that an error can name
// its line.

// parseLines reads one entry per line for field ("allowed_origins" or
// "allowed_ips"): blank lines are skipped, space around an entry dropped,
// each entry normalised by check, and an entry given twice kept once. An
// entry check refuses is an input error of the field naming its line; the
// message echoes at most apikey.MaxEcho bytes of it. Empty text is an
// empty, non-nil list, which an update stores as "cleared".
func parseLines(text, field string, check func(string) (string, error)) ([]string, error) {
	list := []string{}
	seen := make(map[string]bool)
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		e, err := check(line)
		if err != nil {
			return nil, &keyservice.InputError{Field: field, Message: fmt.Sprintf("line %d: %v", i+1, err)}
		}
		if seen[e] {
			continue
		}
		seen[e] = true
		if len(list) == apikey.MaxPolicyEntries {
			return nil, &keyservice.InputError{Field: field, Message: fmt.Sprintf("line %d is one entry too many: at most %d", i+1, apikey.MaxPolicyEntries)}
		}
		list = append(list, e)
	}
	return list, nil
}

// formatLines writes a list as parseLines reads it.
func formatLines(list []string) string { return strings.Join(list, "\n") }

// parseLimits reads the rate_limits field as parseLines does, then checks
// the list as a whole (at most 4 limits, each window once), so that the
// error is the field's own.
func parseLimits(text string) ([]string, error) {
	list, err := parseLines(text, "rate_limits", ratelimit.NormalizeLimit)
	if err != nil {
		return nil, err
	}
	if _, err := ratelimit.CheckLimits(list); err != nil {
		if ee, ok := errors.AsType[*policy.EntryError](err); ok {
			return nil, &keyservice.InputError{Field: "rate_limits", Message: fmt.Sprintf("limit %d: %v", ee.Index+1, ee.Err)}
		}
		return nil, &keyservice.InputError{Field: "rate_limits", Message: err.Error()}
	}
	return list, nil
}
