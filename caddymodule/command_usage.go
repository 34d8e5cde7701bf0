package caddymodule

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
)

// addUsageCommands adds apikey usage and apikey audit to cmd.
func (c cli) addUsageCommands(cmd *cobra.Command) {
	usage := &cobra.Command{
		Use:   "usage [ID] [--since DURATION|RFC3339] [--step 1m|1h|1d] [--owner OWNER]",
		Short: "Shows a key's requests over time by result, or the busiest keys",
		Long: `With an ID, prints the key's requests per step (default: per hour over the
last 24 hours): a sparkline of every step to read at a glance, then a
table of the admitted (ok) and refused requests of each step, refusals by
reason. --since is a duration back from now (90m, 24h, 30d) or an RFC 3339
time; --step is 1m, 1h or 1d; at most 1000 steps.

Without an ID, lists the keys with requests since --since (default 24h),
busiest first, of --owner if given.

Requests of the last seconds, not yet written to the store, are
included.`,
		Args: cobra.MaximumNArgs(1),
		RunE: c.runUsage,
	}
	usage.Flags().String("since", "", "How far back: a duration such as 24h or 30d, or an RFC 3339 time (default 24h)")
	usage.Flags().String("step", "", "With an ID: the step of the series, 1m, 1h or 1d (default 1h)")
	usage.Flags().String("owner", "", "Without an ID: only the keys of this owner")

	audit := &cobra.Command{
		Use:   "audit [--owner OWNER] [--key ID] [--action ACTION] [--since DURATION] [--limit N]",
		Short: "Shows who created, changed, rotated and revoked keys, newest first",
		Long: `Prints the audit log, newest first: every change to a key, with who made
it (admin: the Keygate-Actor of the request, which this CLI sets to
<os user>@<hostname>; console: the signed-in user; system: keygate
itself), from where, and what changed. --limit N prints N events (1 to
1000, default 100); when there are more it says so on stderr.`,
		Args: cobra.NoArgs,
		RunE: c.runAudit,
	}
	audit.Flags().String("owner", "", "Only the events of this owner's keys")
	audit.Flags().String("key", "", "Only the events of this key")
	audit.Flags().String("action", "", "Only events of this action: key.created, key.updated, key.rotated, key.revoked, key.leak_reported")
	audit.Flags().String("since", "", "Only events since then: a duration such as 24h or 30d, or an RFC 3339 time")
	audit.Flags().Int("limit", 0, "Print the newest N events, from 1 to 1000 (default 100)")

	cmd.AddCommand(usage, audit)
}

// runUsage runs apikey usage.
func (c cli) runUsage(cmd *cobra.Command, args []string) error {
	query := url.Values{}
	if since := flagString(cmd, "since"); since != "" {
		if _, err := keyservice.ParseSince(since, c.now()); err != nil {
			return fmt.Errorf("--since: %s", strings.TrimPrefix(err.Error(), "since: "))
		}
		query.Set("since", since)
	}
	if len(args) == 0 {
		if cmd.Flags().Changed("step") {
			return fmt.Errorf("--step: is for the usage of one key: give its ID")
		}
		if cmd.Flags().Changed("owner") {
			owner := flagString(cmd, "owner")
			if err := apikey.CheckOwner(owner); err != nil {
				return fmt.Errorf("--owner: %v", err)
			}
			query.Set("owner", owner)
		}
		return c.runAllUsage(cmd, query)
	}
	if cmd.Flags().Changed("owner") {
		return fmt.Errorf("--owner: is for the listing of every key: leave out the ID")
	}
	id := args[0]
	if err := checkIDArg(id); err != nil {
		return err
	}
	if step := flagString(cmd, "step"); step != "" {
		if _, err := keyservice.ParseStep(step); err != nil {
			return fmt.Errorf("--step: %s", strings.TrimPrefix(err.Error(), "step: "))
		}
		query.Set("step", step)
	}
	var series keyservice.UsageSeries
	if printed, err := getAnswer(cmd, adminAPIKeysPath+"/"+id+"/usage", query, &series); err != nil || printed {
		return err
	}
	printSeries(cmd.OutOrStdout(), series)
	return nil
}

// runAllUsage runs apikey usage without an ID.
func (c cli) runAllUsage(cmd *cobra.Command, query url.Values) error {
	var answer usageResponse
	if printed, err := getAnswer(cmd, adminAPIKeysPath+"/usage", query, &answer); err != nil || printed {
		return err
	}
	out := cmd.OutOrStdout()
	if len(answer.Keys) == 0 {
		fmt.Fprintln(out, "No requests in that range.")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "KEY\tREQUESTS\tOK\tREFUSED\t\n")
	for _, k := range answer.Keys {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", k.KeyID, k.OK+k.Refused, k.OK, k.Refused)
	}
	return tw.Flush()
}

// sparks are the levels of a sparkline, from the least to the most.
var sparks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws one character per value: a space for none, else a
// block whose height is the value's share of the largest (any request at
// all shows at least the lowest block).
func sparkline(values []int64) string {
	var most int64
	for _, v := range values {
		most = max(most, v)
	}
	var b strings.Builder
	for _, v := range values {
		if v <= 0 || most == 0 {
			b.WriteRune(' ')
			continue
		}
		i := int((v*int64(len(sparks)) - 1) / most)
		b.WriteRune(sparks[min(i, len(sparks)-1)])
	}
	return b.String()
}

// stepNames are the steps as the CLI words them.
var stepNames = map[string]string{"1m": "minute", "1h": "hour", "1d": "day"}

// printSeries prints a key's usage: a sparkline for the eye, then the
// totals and one table row per step with requests (every step when
// there are few).
func printSeries(w io.Writer, s keyservice.UsageSeries) {
	totals := make([]int64, len(s.Points))
	var ok, refused int64
	reasons := map[string]int64{}
	for i, p := range s.Points {
		totals[i] = p.Total()
		ok += p.OK
		for r, n := range p.Refused {
			refused += n
			reasons[r] += n
		}
	}
	step := stepNames[s.Step]
	if step == "" {
		step = s.Step
	}
	layout := shortLayout
	if s.Step == "1d" {
		layout = "2006-01-02"
	}
	fmt.Fprintf(w, "Requests of %s per %s, %s to now:\n\n", s.KeyID, step, startOf(s.Points, layout))
	most := slices.Max(append(totals, 0))
	fmt.Fprintf(w, "  %s  max %d per %s\n\n", sparkline(totals), most, step)
	fmt.Fprintf(w, "Total: %d requests, %d ok, %d refused%s\n", ok+refused, ok, refused, reasonList(reasons))
	if ok+refused == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "START\tOK\tREFUSED\t\n")
	for _, p := range s.Points {
		if p.Total() == 0 && len(s.Points) > 48 {
			continue // long series: only the steps with requests
		}
		var r int64
		for _, n := range p.Refused {
			r += n
		}
		fmt.Fprintf(tw, "%s\t%d\t%d%s\t\n", p.Start.UTC().Format(layout), p.OK, r, reasonList(p.Refused))
	}
	_ = tw.Flush()
}

func startOf(points []keyservice.UsagePoint, layout string) string {
	if len(points) == 0 {
		return "now"
	}
	return points[0].Start.UTC().Format(layout)
}

// reasonList words refusals by reason, most first: " (rate_limited 3,
// ip_not_allowed 1)"; "" for none.
func reasonList(reasons map[string]int64) string {
	type reason struct {
		name string
		n    int64
	}
	var list []reason
	for name, n := range reasons {
		if n > 0 {
			list = append(list, reason{name, n})
		}
	}
	if len(list) == 0 {
		return ""
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].n != list[j].n {
			return list[i].n > list[j].n
		}
		return list[i].name < list[j].name
	})
	parts := make([]string, len(list))
	for i, r := range list {
		parts[i] = displayName(r.name) + " " + strconv.FormatInt(r.n, 10)
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// runAudit runs apikey audit.
func (c cli) runAudit(cmd *cobra.Command, _ []string) error {
	query := url.Values{}
	if cmd.Flags().Changed("owner") {
		owner := flagString(cmd, "owner")
		if err := apikey.CheckOwner(owner); err != nil {
			return fmt.Errorf("--owner: %v", err)
		}
		query.Set("owner", owner)
	}
	if cmd.Flags().Changed("key") {
		id := flagString(cmd, "key")
		if err := checkIDArg(id); err != nil {
			return fmt.Errorf("--key: %v", err)
		}
		query.Set("key_id", id)
	}
	for _, name := range []string{"action", "since"} {
		if v := flagString(cmd, name); v != "" {
			query.Set(name, v)
		}
	}
	if cmd.Flags().Changed("limit") {
		limit, _ := cmd.Flags().GetInt("limit")
		if limit < 1 || limit > keyservice.MaxLimit {
			return fmt.Errorf("--limit must be from 1 to %d, not %d", keyservice.MaxLimit, limit)
		}
		query.Set("limit", strconv.Itoa(limit))
	}
	var answer auditResponse
	if printed, err := getAnswer(cmd, adminAPIKeysPath+"/audit", query, &answer); err != nil || printed {
		return err
	}
	out := cmd.OutOrStdout()
	if len(answer.Events) == 0 {
		fmt.Fprintln(out, "No events.")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "AT\tACTION\tKEY\tACTOR\tFROM\tCHANGES\n")
	for _, e := range answer.Events {
		actor := e.Actor.Type
		if e.Actor.ID != "" {
			actor += " " + e.Actor.ID
		}
		from := "-"
		if e.RemoteIP != nil {
			from = *e.RemoteIP
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(longLayout), e.Action, e.KeyID,
			displayName(actor), displayName(from), displayName(eventSummary(e)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if answer.NextCursor != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "There are older events: use --limit (up to %d) or --since.\n", keyservice.MaxLimit)
	}
	return nil
}

// eventSummary words what an event changed: "name: a → b; details".
func eventSummary(e keyservice.EventJSON) string {
	var parts []string
	names := slices.Sorted(maps.Keys(e.Changes))
	for _, name := range names {
		pair := e.Changes[name]
		if e.Action == "key.created" {
			continue // the settings of a new key: see show
		}
		parts = append(parts, fmt.Sprintf("%s: %s → %s", name, shortValue(pair[0]), shortValue(pair[1])))
	}
	for _, name := range slices.Sorted(maps.Keys(e.Details)) {
		parts = append(parts, name+"="+e.Details[name])
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

// shortValue words a JSON value of a change: "none" for null, strings as
// they are, times cut to the second.
func shortValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "none"
	case string:
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return t.UTC().Format(longLayout)
		}
		return strconv.Quote(v)
	case []any:
		if len(v) == 0 {
			return "none"
		}
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = fmt.Sprint(e)
		}
		return cut(strings.Join(parts, ", "))
	case map[string]any:
		if len(v) == 0 {
			return "none"
		}
		parts := make([]string, 0, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v[k]))
		}
		return cut(strings.Join(parts, ", "))
	default:
		return cut(fmt.Sprint(v))
	}
}

// cut shortens a value for a table cell: at most 60 bytes.
func cut(s string) string {
	if len(s) > 60 {
		for i := 59; i > 0; i-- {
			if utf8.RuneStart(s[i]) {
				return s[:i] + "…"
			}
		}
	}
	return s
}

// getAnswer asks the admin API for path with query. With --json it prints
// the answer as it came and reports printed; else it decodes it into v.
func getAnswer(cmd *cobra.Command, path string, query url.Values, v any) (printed bool, err error) {
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	body, err := callAdmin(cmd, http.MethodGet, path, nil)
	if err != nil {
		return false, err
	}
	if printedJSON(cmd, body) {
		return true, nil
	}
	return false, decodeAnswer(body, v)
}
