package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/humantime"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/policy"
	"github.com/docana/keygate/internal/ratelimit"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "apikey",
		Usage: "create|list|show|update|revoke|rotate|usage|audit|instances|backup [<args>] [--json] [--address <admin>] [--config <path> [--adapter <name>]]",
		Short: "Creates, lists, shows, updates, revokes and rotates API keys; shows their usage and audit log; lists the gateway instances; backs up the key store",
		Long: `
Manages keygate's API keys through the admin API of a running instance:

  apikey create --name NAME --scope full|widget|routine --expires 1h|1d|1w|1mo|1y|never
                [--owner OWNER] [--meta NAME=VALUE]... [--origin ORIGIN]... [--ip CIDR]...
                [--rate-limit N/WINDOW]...
  apikey list [--status active|revoked|expired] [--owner OWNER] [--limit N | --all]
  apikey show ID
  apikey update ID [--name NAME] [--meta NAME=VALUE]... [--meta NAME=]...
                [--origin ORIGIN... | --no-origins] [--ip CIDR... | --no-ips]
                [--rate-limit N/WINDOW... | --no-rate-limits]
  apikey revoke ID [--yes]
  apikey rotate ID [--grace DURATION]
  apikey usage [ID] [--since DURATION|RFC3339] [--step 1m|1h|1d] [--owner OWNER]
  apikey audit [--owner OWNER] [--key ID] [--action ACTION] [--since DURATION] [--limit N]
  apikey instances
  apikey backup FILE [--force]

create and rotate print the new key's secret once: it cannot be shown
again. revoke asks for confirmation when stdin is a terminal and needs
--yes otherwise. create, update, revoke and rotate say on how many gateway
instances the change is in force ("Revoked on 3 of 3 instances"), or which
have not confirmed it within the gateway's confirm_timeout.

instances lists the gateway instances sharing the key store: which are
live (reported within three sync intervals) and how many changes each is
behind. With --json, every command prints the admin API's JSON
answer as it is.

list prints one page: the newest 100 keys, or --limit N of them (1 to
1000); when there are more it says so on stderr. --all follows the pages
to the last key; with --json it prints one {"api_keys": [...],
"next_cursor": null} holding every key.

update renames a key or changes its metadata, allowed origins, allowed
IPs or rate limits: --meta NAME=VALUE sets an entry, --meta NAME= removes
one, and the others stay; --origin, --ip and --rate-limit replace the
whole list, --no-origins, --no-ips and --no-rate-limits clear it. Scope, owner and expiry never change: rotate the key or
create a new one.

--origin (scheme://host[:port], port * for any, host *.example.com for its
subdomains) and --ip (an address or CIDR prefix) restrict where a key may
be used from; without them it may be used from anywhere. create warns on
stderr when it makes a widget key without --origin.

--rate-limit N/WINDOW (up to 4, each window once; N from 1 to 10^9, WINDOW
a whole number of s, m, h or d from 1s to 30d, such as 100/1m) limits
the key's requests in sliding windows; a key without limits of its own has
its scope's defaults (the app's rate_limit option). Changing the limits
keeps what the key has used.

Every request names who makes it in the Keygate-Actor header, as
<os user>@<hostname>: the keys it creates record it in created_by.

The admin endpoint is found like 'reload' finds it: --address if given,
else the admin address of the --config file, else of a Caddyfile in the
current directory, else ` + caddy.DefaultAdminListen + `.

Times are shown in UTC; "never" stands for a time that is not set.`,
		CobraFunc: defaultCLI.setUp,
	})
}

// cli is the apikey command. Its fields are what tests replace.
type cli struct {
	// now is the time relative times are counted from.
	now func() time.Time
	// isTerminal reports whether stdin is an interactive terminal, where
	// revoke asks for confirmation.
	isTerminal func(io.Reader) bool
}

// defaultCLI is the apikey command as the keygate binary runs it.
var defaultCLI = cli{now: time.Now, isTerminal: readerIsTerminal}

// readerIsTerminal reports whether r is a terminal.
func readerIsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// setUp adds the subcommands and the flags they share to cmd.
func (c cli) setUp(cmd *cobra.Command) {
	flags := cmd.PersistentFlags()
	flags.String("address", "", "Address of the admin API (default: from --config or ./Caddyfile, else "+caddy.DefaultAdminListen+")")
	flags.StringP("config", "c", "", "Configuration file to read the admin address from, if --address is not used")
	flags.StringP("adapter", "a", "", "Name of the config adapter of --config")
	flags.Bool("json", false, "Print the admin API's JSON answer as it is")

	create := &cobra.Command{
		Use:   "create --name NAME --scope full|widget|routine --expires 1h|1d|1w|1mo|1y|never",
		Short: "Creates a key and prints its secret, the only time it is shown",
		Args:  cobra.NoArgs,
		RunE:  c.runCreate,
	}
	create.Flags().String("name", "", `Name people know the key by, such as "CI/CD Pipeline" (1 to 100 characters)`)
	create.Flags().String("scope", "", "Routes the key may call: full, widget or routine")
	create.Flags().String("expires", "", "Lifetime of the key: 1h, 1d, 1w, 1mo, 1y or never")
	create.Flags().String("owner", "", "Customer the key belongs to, as the upstream names it (A-Z a-z 0-9 . _ : @ -)")
	create.Flags().StringArray("meta", nil, "Metadata entry NAME=VALUE sent upstream with the key's requests (repeatable)")
	create.Flags().StringArray("origin", nil, "Web origin the key may be used from, scheme://host[:port], such as https://shop.example.com or https://*.example.com (repeatable, at most 32; default: any)")
	create.Flags().StringArray("ip", nil, "Client address or CIDR prefix the key may be used from, such as 203.0.113.7 or 10.0.0.0/8 (repeatable, at most 32; default: any)")
	create.Flags().StringArray("rate-limit", nil, "Rate limit N/WINDOW, such as 100/1m or 10000/1d (repeatable, at most 4; default: the scope's)")

	list := &cobra.Command{
		Use:   "list [--status active|revoked|expired] [--owner OWNER] [--limit N | --all]",
		Short: "Lists keys, newest first, a page at a time or all of them",
		Long: `Lists keys, newest first. Without --limit or --all it prints the newest
100 keys and, when there are more, says so on stderr. --limit N prints the
newest N (1 to 1000); --all reads every page and prints every key.`,
		Args: cobra.NoArgs,
		RunE: c.runList,
	}
	list.Flags().String("status", "", "List only keys with this status: active, revoked or expired")
	list.Flags().String("owner", "", "List only the keys of this owner")
	list.Flags().Int("limit", 0, "Print the newest N keys, from 1 to 1000 (default 100)")
	list.Flags().Bool("all", false, "Print every key, reading as many pages as it takes")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Shows one key",
		Args:  cobra.ExactArgs(1),
		RunE:  c.runShow,
	}

	update := &cobra.Command{
		Use:   "update ID [--name NAME] [--meta NAME=VALUE]... [--meta NAME=]... [--origin ORIGIN... | --no-origins] [--ip CIDR... | --no-ips] [--rate-limit N/WINDOW... | --no-rate-limits]",
		Short: "Renames a key or changes its metadata, allowed origins, allowed IPs or rate limits",
		Long: `Renames a key or changes its metadata, allowed origins, allowed IPs or rate
limits, on every gateway instance as fast as a revocation. --meta NAME=VALUE sets an
entry and --meta NAME= removes one; the other entries stay (update reads
the key's metadata first). --origin and --ip replace the key's whole list
with the ones given; --no-origins and --no-ips clear it, so that the key
accepts any origin or IP again. --rate-limit replaces the key's limits
and --no-rate-limits clears them (its scope's defaults apply); what the
key has used still counts. Scope, owner and expiry never change:
rotate the key or create a new one. A revoked key cannot be changed.`,
		Args: cobra.ExactArgs(1),
		RunE: c.runUpdate,
	}
	update.Flags().String("name", "", "New name of the key (1 to 100 characters)")
	update.Flags().StringArray("meta", nil, "Set metadata entry NAME=VALUE, or remove it with NAME= (repeatable)")
	update.Flags().StringArray("origin", nil, "Replace the allowed origins with these, scheme://host[:port] (repeatable)")
	update.Flags().StringArray("ip", nil, "Replace the allowed IPs with these addresses or CIDR prefixes (repeatable)")
	update.Flags().Bool("no-origins", false, "Clear the allowed origins: the key accepts any origin")
	update.Flags().Bool("no-ips", false, "Clear the allowed IPs: the key accepts any client address")
	update.Flags().StringArray("rate-limit", nil, "Replace the rate limits with these, N/WINDOW (repeatable)")
	update.Flags().Bool("no-rate-limits", false, "Clear the key's rate limits: its scope's defaults apply")

	revoke := &cobra.Command{
		Use:   "revoke ID [--yes]",
		Short: "Revokes a key at once and for good",
		Long: `Revokes a key: every application using it stops working at once, on every
gateway instance, and nothing can undo it. On a terminal, revoke asks for
confirmation; otherwise --yes is required.`,
		Args: cobra.ExactArgs(1),
		RunE: c.runRevoke,
	}
	revoke.Flags().BoolP("yes", "y", false, "Revoke without asking for confirmation")

	rotate := &cobra.Command{
		Use:   "rotate ID [--grace DURATION]",
		Short: "Replaces a key by a new one and lets the old one expire",
		Long: `Creates a new key with the same name, scope and lifetime, prints its secret
once, and makes the old key expire after the grace period (0s = at once,
at most 168h), unless it expires sooner anyway. A revoked key cannot be
rotated.`,
		Args: cobra.ExactArgs(1),
		RunE: c.runRotate,
	}
	rotate.Flags().String("grace", "24h", "How long the old key keeps working, a Go duration from 0s to 168h")

	instances := &cobra.Command{
		Use:   "instances",
		Short: "Lists the gateway instances sharing the key store",
		Long: `Lists the gateway instances sharing the key store, as the store's registry
knows them: each instance's ID, host, version, whether it is live (it
reported within three sync intervals), how many changes it is behind the
store, how many keys it has cached, and when it last reported. A change
made through the admin API or the console waits for every live instance.`,
		Args: cobra.NoArgs,
		RunE: c.runInstances,
	}

	cmd.AddCommand(create, list, show, update, revoke, rotate, instances)
	cmd.AddCommand(c.backupCommand())
	c.addUsageCommands(cmd)
}

// runInstances runs apikey instances.
func (c cli) runInstances(cmd *cobra.Command, _ []string) error {
	var list keyservice.InstancesJSON
	if printed, err := getAnswer(cmd, adminAPIKeysPath+instancesPath, nil, &list); err != nil || printed {
		return err
	}
	printInstances(cmd.OutOrStdout(), list, c.now())
	return nil
}

// printInstances prints the instance table, live ones first.
func printInstances(w io.Writer, list keyservice.InstancesJSON, now time.Time) {
	live := 0
	for _, in := range list.Instances {
		if in.Live {
			live++
		}
	}
	fmt.Fprintf(w, "%d live of %d instances; the store is at change %d.\n\n", live, len(list.Instances), list.Seq)
	ins := slices.Clone(list.Instances)
	slices.SortStableFunc(ins, func(a, b keyservice.InstanceJSON) int {
		switch {
		case a.Live == b.Live:
			return 0
		case a.Live:
			return -1
		}
		return 1
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "ID\tHOST\tVERSION\tLIVE\tBEHIND\tCACHED\tSEEN\tSTARTED\n")
	for _, in := range ins {
		liveness := "no"
		if in.Live {
			liveness = "yes"
		}
		behind := "up to date"
		if d := list.Seq - in.AppliedSeq; d > 0 {
			behind = fmt.Sprintf("%d changes", d)
			if d == 1 {
				behind = "1 change"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s ago\t%s\n", in.ID, displayName(in.Hostname), displayName(in.Version),
			liveness, behind, in.CacheEntries, humanAge(now.Sub(in.SeenAt)), shortTime(&in.StartedAt))
	}
	_ = tw.Flush()
}

// humanAge is a short age: "3s", "4m", "2h", "5d".
func humanAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(int(d/time.Second), 0))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// printPropagation says on how many instances a change is in force, done
// being its verb ("Revoked"), if the answer says.
func printPropagation(w io.Writer, k keyservice.KeyJSON, done string) {
	if k.Propagation == nil {
		return
	}
	if s := k.Propagation.Describe(done); s != "" {
		fmt.Fprintln(w, s)
		fmt.Fprintln(w)
	}
}

// runCreate runs apikey create.
func (c cli) runCreate(cmd *cobra.Command, _ []string) error {
	req, err := createFlags(flagString(cmd, "name"), flagString(cmd, "scope"), flagString(cmd, "expires"))
	if err != nil {
		return err
	}
	if cmd.Flags().Changed("owner") {
		req.Owner = flagString(cmd, "owner")
		if err := apikey.CheckOwner(req.Owner); err != nil {
			return fmt.Errorf("--owner: %v", err)
		}
	}
	meta, _ := cmd.Flags().GetStringArray("meta")
	entries, err := parseMeta(meta)
	if err != nil {
		return err
	}
	for name, value := range entries {
		if value == nil {
			return fmt.Errorf("--meta %s=: an empty value removes an entry in update; give a value, or leave the entry out", name)
		}
		if req.Metadata == nil {
			req.Metadata = map[string]string{}
		}
		req.Metadata[name] = *value
	}
	if req.AllowedOrigins, err = policyFlags(cmd, "origin", policy.CheckOrigins); err != nil {
		return err
	}
	if req.AllowedIPs, err = policyFlags(cmd, "ip", policy.CheckIPs); err != nil {
		return err
	}
	if req.RateLimits, err = policyFlags(cmd, "rate-limit", ratelimit.CheckLimits); err != nil {
		return err
	}
	body, err := callAdmin(cmd, http.MethodPost, adminAPIKeysPath, req)
	if err != nil {
		return err
	}
	var created secretAnswer
	decodeErr := decodeAnswer(body, &created)
	if req.Scope == apikey.ScopeWidget.String() && len(req.AllowedOrigins) == 0 {
		id := created.APIKey.ID
		if !apikey.ValidID(id) {
			id = "ID"
		}
		fmt.Fprintf(cmd.ErrOrStderr(), widgetWithoutOrigins, id)
	}
	if printedJSON(cmd, body) {
		return nil
	}
	if decodeErr != nil {
		return decodeErr
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Created API key %s (%s).\n\n", created.APIKey.ID, displayName(created.APIKey.Name))
	printPropagation(out, created.APIKey, "Created")
	printSecret(out, created.Secret)
	fmt.Fprintln(out)
	printKey(out, created.APIKey, c.now())
	return nil
}

// listPage is an answer of GET /apikeys.
type listPage struct {
	APIKeys    []keyservice.KeyJSON `json:"api_keys"`
	NextCursor *string              `json:"next_cursor"`
}

// runList runs apikey list: one page, or with --all every page.
func (c cli) runList(cmd *cobra.Command, _ []string) error {
	status := flagString(cmd, "status")
	query := url.Values{}
	if status != "" {
		if _, err := apikey.ParseStatus(status); err != nil {
			return fmt.Errorf("--status: %v", err)
		}
		query.Set("status", status)
	}
	if cmd.Flags().Changed("owner") {
		owner := flagString(cmd, "owner")
		if err := apikey.CheckOwner(owner); err != nil {
			return fmt.Errorf("--owner: %v", err)
		}
		query.Set("owner", owner)
	}
	all, _ := cmd.Flags().GetBool("all")
	limitSet := cmd.Flags().Changed("limit")
	limit, _ := cmd.Flags().GetInt("limit")
	switch {
	case all && limitSet:
		return errors.New("--limit and --all: give one; --all reads pages of 1000")
	case limitSet && (limit < 1 || limit > keyservice.MaxLimit):
		return fmt.Errorf("--limit must be from 1 to %d, not %d", keyservice.MaxLimit, limit)
	case limitSet:
		query.Set("limit", strconv.Itoa(limit))
	case all:
		query.Set("limit", strconv.Itoa(keyservice.MaxLimit))
	}
	asJSON, _ := cmd.Flags().GetBool("json")
	var list listPage
	for {
		uri := adminAPIKeysPath
		if len(query) > 0 {
			uri += "?" + query.Encode()
		}
		body, err := callAdmin(cmd, http.MethodGet, uri, nil)
		if err != nil {
			return err
		}
		if !all && printedJSON(cmd, body) {
			return nil
		}
		var page listPage
		if err := decodeAnswer(body, &page); err != nil {
			return err
		}
		list.APIKeys = append(list.APIKeys, page.APIKeys...)
		if !all || page.NextCursor == nil {
			list.NextCursor = page.NextCursor
			break
		}
		if *page.NextCursor == "" || query.Get("cursor") == *page.NextCursor {
			return errors.New("reading the admin API's answer: the next page's cursor repeats or is empty")
		}
		query.Set("cursor", *page.NextCursor)
	}
	if asJSON {
		if list.APIKeys == nil {
			list.APIKeys = []keyservice.KeyJSON{}
		}
		data, err := json.Marshal(list)
		if err != nil {
			return err
		}
		_, err = cmd.OutOrStdout().Write(append(data, '\n'))
		return err
	}
	if len(list.APIKeys) == 0 {
		if status != "" {
			fmt.Fprintf(cmd.OutOrStdout(), "No %s API keys.\n", status)
		} else {
			fmt.Fprintln(cmd.OutOrStdout(), "No API keys.")
		}
		return nil
	}
	printTable(cmd.OutOrStdout(), list.APIKeys)
	if list.NextCursor != nil {
		noun := "keys"
		if len(list.APIKeys) == 1 {
			noun = "key"
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "Showing the newest %d %s; there are more. Use --all to list every key, or --limit N for up to %d.\n",
			len(list.APIKeys), noun, keyservice.MaxLimit)
	}
	return nil
}

// runShow runs apikey show.
func (c cli) runShow(cmd *cobra.Command, args []string) error {
	id := args[0]
	if err := checkIDArg(id); err != nil {
		return err
	}
	body, err := callAdmin(cmd, http.MethodGet, adminAPIKeysPath+"/"+id, nil)
	if err != nil || printedJSON(cmd, body) {
		return err
	}
	var k keyservice.KeyJSON
	if err := decodeAnswer(body, &k); err != nil {
		return err
	}
	printKey(cmd.OutOrStdout(), k, c.now())
	return nil
}

// runUpdate runs apikey update: a PATCH of the fields the flags change.
// --meta merges into the key's metadata, which it reads first; two
// updates racing may then lose one's entries (the admin API replaces
// metadata whole).
func (c cli) runUpdate(cmd *cobra.Command, args []string) error {
	id := args[0]
	if err := checkIDArg(id); err != nil {
		return err
	}
	var req updateRequest
	if cmd.Flags().Changed("name") {
		name := flagString(cmd, "name")
		if err := apikey.CheckName(name); err != nil {
			return fmt.Errorf("--name %v", err)
		}
		req.Name = &name
	}
	meta, _ := cmd.Flags().GetStringArray("meta")
	entries, err := parseMeta(meta)
	if err != nil {
		return err
	}
	for _, l := range []struct {
		flag, none string
		check      func([]string) ([]string, error)
		dst        **[]string
	}{
		{"origin", "no-origins", policy.CheckOrigins, &req.AllowedOrigins},
		{"ip", "no-ips", policy.CheckIPs, &req.AllowedIPs},
		{"rate-limit", "no-rate-limits", ratelimit.CheckLimits, &req.RateLimits},
	} {
		none, _ := cmd.Flags().GetBool(l.none)
		given := cmd.Flags().Changed(l.flag)
		switch {
		case none && given:
			return fmt.Errorf("--%s and --%s: give one", l.flag, l.none)
		case none:
			*l.dst = &[]string{}
		case given:
			list, err := policyFlags(cmd, l.flag, l.check)
			if err != nil {
				return err
			}
			*l.dst = &list
		}
	}
	if req.Name == nil && len(entries) == 0 && req.AllowedOrigins == nil && req.AllowedIPs == nil && req.RateLimits == nil {
		return errors.New("nothing to change: give --name NAME, --meta NAME=VALUE, --origin ORIGIN, --ip CIDR, --rate-limit N/WINDOW, --no-origins, --no-ips or --no-rate-limits (scope, owner and expiry never change: rotate the key or create a new one)")
	}
	if len(entries) > 0 {
		body, err := callAdmin(cmd, http.MethodGet, adminAPIKeysPath+"/"+id, nil)
		if err != nil {
			return err
		}
		var current keyservice.KeyJSON
		if err := decodeAnswer(body, &current); err != nil {
			return err
		}
		merged := maps.Clone(current.Metadata)
		if merged == nil {
			merged = map[string]string{}
		}
		for name, value := range entries {
			if value == nil {
				delete(merged, name)
			} else {
				merged[name] = *value
			}
		}
		req.Metadata = &merged
	}
	body, err := callAdmin(cmd, http.MethodPatch, adminAPIKeysPath+"/"+id, req)
	if err != nil || printedJSON(cmd, body) {
		return err
	}
	var k keyservice.KeyJSON
	if err := decodeAnswer(body, &k); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Updated API key %s (%s).\n\n", k.ID, displayName(k.Name))
	printPropagation(out, k, "Updated")
	printKey(out, k, c.now())
	return nil
}

// widgetWithoutOrigins is what create says on stderr when it made a widget
// key that any origin may use.
const widgetWithoutOrigins = `Warning: this widget key has no allowed origins, so it works from any web
page. Its secret is visible in the pages that embed it: anyone can copy it
and call your widget routes from their own site. Restrict it to your pages
with: apikey update %s --origin https://your.site (repeatable).
`

// policyFlags reads the repeatable --origin or --ip flag and checks the
// list with check (policy.CheckOrigins, policy.CheckIPs), to name the flag
// in an error before any request; it returns the values as given, which
// the admin API normalises. None given is nil.
func policyFlags(cmd *cobra.Command, flag string, check func([]string) ([]string, error)) ([]string, error) {
	values, _ := cmd.Flags().GetStringArray(flag)
	if cmd.Flags().Changed(flag) && len(values) == 0 {
		return nil, fmt.Errorf("--%s: empty value", flag)
	}
	if _, err := check(values); err != nil {
		if ee, ok := errors.AsType[*policy.EntryError](err); ok {
			return nil, fmt.Errorf("--%s: %v", flag, ee.Err)
		}
		return nil, fmt.Errorf("--%s: %v", flag, err)
	}
	return values, nil
}

// parseMeta reads --meta flags, NAME=VALUE, into entries: a nil value for
// NAME= (remove). Names are checked here, to name the flag in the error;
// values by the admin API. A name given twice is refused.
func parseMeta(flags []string) (map[string]*string, error) {
	entries := make(map[string]*string, len(flags))
	for _, f := range flags {
		name, value, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("--meta %s: want NAME=VALUE, or NAME= to remove an entry", apikey.QuoteInput(f))
		}
		if err := apikey.CheckMetadata(map[string]string{name: ""}); err != nil {
			return nil, fmt.Errorf("--meta %s: %v", apikey.QuoteInput(name), err)
		}
		if _, dup := entries[name]; dup {
			return nil, fmt.Errorf("--meta %s: given twice", name)
		}
		if value == "" {
			entries[name] = nil
		} else {
			entries[name] = &value
		}
	}
	return entries, nil
}

// runRevoke runs apikey revoke. Without --yes it asks on a terminal and
// refuses elsewhere, before touching the admin API: a script that forgot
// --yes must not revoke anything.
func (c cli) runRevoke(cmd *cobra.Command, args []string) error {
	id := args[0]
	if err := checkIDArg(id); err != nil {
		return err
	}
	yes, _ := cmd.Flags().GetBool("yes")
	if !yes {
		in := cmd.InOrStdin()
		if !c.isTerminal(in) {
			return fmt.Errorf("not revoking key %s: stdin is not a terminal to confirm on; pass --yes to revoke it", id)
		}
		body, err := callAdmin(cmd, http.MethodGet, adminAPIKeysPath+"/"+id, nil)
		if err != nil {
			return err
		}
		var k keyservice.KeyJSON
		if err := decodeAnswer(body, &k); err != nil {
			return err
		}
		ok, err := confirm(in, cmd.ErrOrStderr(), fmt.Sprintf("Revoke key %s (%s)? [y/N] ", id, displayName(k.Name)))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("key %s was not revoked", id)
		}
	}
	body, err := callAdmin(cmd, http.MethodDelete, adminAPIKeysPath+"/"+id, nil)
	if err != nil || printedJSON(cmd, body) {
		return err
	}
	var k keyservice.KeyJSON
	if err := decodeAnswer(body, &k); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Revoked API key %s (%s): every request with it is refused.\n\n", k.ID, displayName(k.Name))
	printPropagation(out, k, "Revoked")
	printKey(out, k, c.now())
	return nil
}

// runRotate runs apikey rotate.
func (c cli) runRotate(cmd *cobra.Command, args []string) error {
	id := args[0]
	if err := checkIDArg(id); err != nil {
		return err
	}
	grace := flagString(cmd, "grace")
	if err := checkGrace(grace); err != nil {
		return err
	}
	body, err := callAdmin(cmd, http.MethodPost, adminAPIKeysPath+"/"+id+"/rotate", rotateRequest{Grace: grace})
	if err != nil || printedJSON(cmd, body) {
		return err
	}
	var rotated secretAnswer
	if err := decodeAnswer(body, &rotated); err != nil {
		return err
	}
	if rotated.Previous == nil {
		return errors.New("the admin API's answer has no previous key")
	}
	now := c.now()
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Rotated API key %s (%s): its replacement is %s.\n\n", rotated.Previous.ID, displayName(rotated.Previous.Name), rotated.APIKey.ID)
	printPropagation(out, rotated.APIKey, "Rotated")
	printSecret(out, rotated.Secret)
	if rotated.Previous.Status == "active" && rotated.Previous.ExpiresAt != nil {
		fmt.Fprintf(out, "The previous key keeps working until %s.\n", longTime(*rotated.Previous.ExpiresAt, now))
	} else {
		fmt.Fprintf(out, "The previous key is %s: it no longer works.\n", rotated.Previous.Status)
	}
	fmt.Fprintln(out)
	printKey(out, rotated.APIKey, now)
	return nil
}

// secretAnswer is the admin API's answer to a create or a rotate.
type secretAnswer struct {
	Secret   string              `json:"secret"`
	APIKey   keyservice.KeyJSON  `json:"api_key"`
	Previous *keyservice.KeyJSON `json:"previous"`
}

// createFlags checks the flags of apikey create and returns the request
// body. The admin API checks them again; checking here gives a flag's
// name in the error and spares a round trip.
func createFlags(name, scope, expires string) (createRequest, error) {
	if strings.TrimSpace(name) == "" {
		return createRequest{}, errors.New("--name is required: the name people know the key by, such as \"CI/CD Pipeline\"")
	}
	if scope == "" {
		return createRequest{}, errors.New("--scope is required: full, widget or routine")
	}
	if _, err := apikey.ParseScope(scope); err != nil {
		return createRequest{}, fmt.Errorf("--scope: %v", err)
	}
	if expires == "" {
		return createRequest{}, errors.New("--expires is required: 1h, 1d, 1w, 1mo, 1y or never")
	}
	if _, err := apikey.ParseExpiry(expires); err != nil {
		return createRequest{}, fmt.Errorf("--expires: %v", err)
	}
	return createRequest{Name: name, Scope: scope, ExpiresIn: expires}, nil
}

// checkIDArg checks that id is a key ID before it goes into a URI, which
// the admin endpoint logs. It does not echo id: a secret pasted in its
// place must not land in a terminal's scrollback or a CI log either.
func checkIDArg(id string) error {
	if apikey.ValidID(id) {
		return nil
	}
	msg := `not a key ID: IDs are "key_" followed by 22 letters and digits, as "apikey list" shows`
	if strings.HasPrefix(id, apikey.IDPrefix) {
		return errors.New(msg)
	}
	if _, _, ok := strings.Cut(id, "_"); ok && len(id) > 30 {
		// Most likely a key itself; say so without repeating it.
		msg += " (this looks like a key's secret: give its ID instead, and keep the secret out of commands)"
	}
	return errors.New(msg)
}

// checkGrace checks the --grace of apikey rotate.
func checkGrace(grace string) error {
	d, err := time.ParseDuration(grace)
	if err != nil {
		return fmt.Errorf("--grace: %s is not a duration such as 24h, 30m or 0s", apikey.QuoteInput(grace))
	}
	if d < 0 || d > keyservice.MaxGrace {
		return fmt.Errorf("--grace must be between 0s and 168h, not %s", grace)
	}
	return nil
}

// adminAddress finds the admin endpoint the way 'caddy reload' does:
// --address, else the admin address of the --config file, else of a
// Caddyfile in the current directory, else the default.
func adminAddress(cmd *cobra.Command) (string, error) {
	address := flagString(cmd, "address")
	config := flagString(cmd, "config")
	adapter := flagString(cmd, "adapter")
	if address != "" {
		return address, nil
	}
	var loaded []byte
	if config == "" && adapter == "" {
		var err error
		loaded, config, _, err = caddycmd.LoadConfig("", "")
		if err != nil {
			return "", fmt.Errorf("reading the admin address from the Caddyfile in the current directory: %v", err)
		}
	}
	addr, err := caddycmd.DetermineAdminAPIAddress("", loaded, config, adapter)
	if err != nil {
		return "", fmt.Errorf("finding the admin address: %v", err)
	}
	return addr, nil
}

// callAdmin sends a request to the admin API and returns the body of a
// successful answer. An error answer becomes the message of its
// {"error": "..."} body.
func callAdmin(cmd *cobra.Command, method, uri string, body any) ([]byte, error) {
	addr, err := adminAddress(cmd)
	if err != nil {
		return nil, err
	}
	var reqBody io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		reqBody = bytes.NewReader(data)
	}
	header := make(http.Header)
	header.Set(actorHeader, cliActor())
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, header, reqBody)
	if err != nil {
		return nil, adminError(addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the admin API's answer: %v", err)
	}
	return data, nil
}

// cliActor names who runs the CLI, for the Keygate-Actor header:
// "<os user>@<hostname>", made to fit the admin API's rule (at most 128
// bytes of printable UTF-8), with "unknown" for what cannot be found.
func cliActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	} else if env := os.Getenv("USER"); env != "" {
		name = env
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return apikey.FitActorID(name + "@" + host)
}

// adminError turns an error of caddycmd.AdminAPIRequest into what the user
// needs to read. For an error answer, that function's error reads
// "caddy responded with error: HTTP <status>: <body>"; the message of
// Caddy's admin error body, {"error": "..."}, is all that is kept.
func adminError(addr string, err error) error {
	_, answer, ok := strings.Cut(err.Error(), "caddy responded with error: ")
	if !ok {
		return fmt.Errorf("reaching the admin API at %s: %v (is keygate running there? --address sets where to look)", addr, err)
	}
	if _, body, ok := strings.Cut(answer, ": "); ok {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(body), &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
	}
	return fmt.Errorf("the admin API at %s answered %s", addr, strings.TrimSpace(answer))
}

// printedJSON prints body as it is if --json was given, and reports
// whether it did.
func printedJSON(cmd *cobra.Command, body []byte) bool {
	asJSON, _ := cmd.Flags().GetBool("json")
	if asJSON {
		_, _ = cmd.OutOrStdout().Write(body)
	}
	return asJSON
}

// decodeAnswer decodes a successful answer of the admin API.
func decodeAnswer(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("reading the admin API's answer: %v", err)
	}
	return nil
}

// confirm asks question on w and reads the answer from r: "y" or "yes",
// in any case, is yes; anything else, an empty line included, is no.
func confirm(r io.Reader, w io.Writer, question string) (bool, error) {
	fmt.Fprint(w, question)
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading the answer: %v", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// printSecret prints a new key's secret with the warning that goes with
// it.
func printSecret(w io.Writer, secret string) {
	fmt.Fprintf(w, "    %s\n\n", secret)
	fmt.Fprintln(w, "Copy this key now: it will not be shown again. keygate keeps only its hash,")
	fmt.Fprintln(w, "so a lost key cannot be recovered, only rotated or revoked.")
}

// printKey prints a key's fields, one per line.
func printKey(w io.Writer, k keyservice.KeyJSON, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ID:\t%s\n", k.ID)
	fmt.Fprintf(tw, "Name:\t%s\n", displayName(k.Name))
	fmt.Fprintf(tw, "Scope:\t%s\n", k.Scope)
	fmt.Fprintf(tw, "Status:\t%s\n", k.Status)
	fmt.Fprintf(tw, "Hint:\t%s\n", k.Hint)
	fmt.Fprintf(tw, "Created:\t%s\n", longTime(k.CreatedAt, now))
	fmt.Fprintf(tw, "Last used:\t%s\n", longTimeOrNever(k.LastUsedAt, now))
	fmt.Fprintf(tw, "Expires:\t%s\n", longTimeOrNever(k.ExpiresAt, now))
	// "never" would read as "cannot be revoked".
	revoked := "no"
	if k.RevokedAt != nil {
		revoked = longTime(*k.RevokedAt, now)
	}
	fmt.Fprintf(tw, "Revoked:\t%s\n", revoked)
	if k.ReplacedBy != nil {
		fmt.Fprintf(tw, "Replaced by:\t%s\n", *k.ReplacedBy)
	}
	owner := "none"
	if k.Owner != nil {
		owner = displayName(*k.Owner)
	}
	fmt.Fprintf(tw, "Owner:\t%s\n", owner)
	if len(k.Metadata) == 0 {
		fmt.Fprintf(tw, "Metadata:\tnone\n")
	}
	for i, name := range slices.Sorted(maps.Keys(k.Metadata)) {
		label := ""
		if i == 0 {
			label = "Metadata:"
		}
		fmt.Fprintf(tw, "%s\t%s=%s\n", label, displayName(name), displayName(k.Metadata[name]))
	}
	printList(tw, "Origins:", k.AllowedOrigins)
	printList(tw, "IPs:", k.AllowedIPs)
	if len(k.RateLimits) == 0 {
		fmt.Fprintf(tw, "Limits:\tthe scope's default\n")
	}
	for i, e := range k.RateLimits {
		label := ""
		if i == 0 {
			label = "Limits:"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, displayName(e))
	}
	// "Creator", not "Created by", keeps the labels' column as it was.
	creator := displayName(k.CreatedBy.Type)
	if creator == "" {
		creator = "unknown"
	}
	if k.CreatedBy.ID != "" {
		creator += " " + displayName(k.CreatedBy.ID)
	}
	fmt.Fprintf(tw, "Creator:\t%s\n", creator)
	_ = tw.Flush()
}

// printList prints a key's allowed origins or IPs, one per line, or "any".
func printList(tw io.Writer, label string, list []string) {
	if len(list) == 0 {
		fmt.Fprintf(tw, "%s\tany\n", label)
	}
	for i, e := range list {
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, displayName(e))
	}
}

// printTable prints keys as an aligned table, one per line, with an
// OWNER column when any key has an owner.
func printTable(w io.Writer, keys []keyservice.KeyJSON) {
	owners := slices.ContainsFunc(keys, func(k keyservice.KeyJSON) bool { return k.Owner != nil })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if owners {
		fmt.Fprint(tw, "ID\tNAME\tOWNER\tSCOPE\tSTATUS\tCREATED\tLAST USED\tEXPIRES\n")
	} else {
		fmt.Fprint(tw, "ID\tNAME\tSCOPE\tSTATUS\tCREATED\tLAST USED\tEXPIRES\n")
	}
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t", k.ID, shortName(k.Name))
		if owners {
			owner := "-"
			if k.Owner != nil {
				owner = displayName(*k.Owner)
			}
			fmt.Fprintf(tw, "%s\t", owner)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Scope, tableStatus(k),
			shortTime(&k.CreatedAt), shortTime(k.LastUsedAt), shortTime(k.ExpiresAt))
	}
	_ = tw.Flush()
}

// tableStatus is a key's status as the table shows it, naming the key that
// replaced it, if any: "active, replaced by key_…".
func tableStatus(k keyservice.KeyJSON) string {
	if k.ReplacedBy != nil {
		return k.Status + ", replaced by " + *k.ReplacedBy
	}
	return k.Status
}

// Time layouts: tables show minutes, single keys seconds; both in UTC.
const (
	shortLayout = "2006-01-02 15:04 UTC"
	longLayout  = "2006-01-02 15:04:05 UTC"
)

// shortTime formats a time for a table, "never" if it is not set.
func shortTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return t.UTC().Format(shortLayout)
}

// longTime formats a time with how long ago, or in how long, it is:
// "2026-11-25 19:41:07 UTC (3 minutes ago)".
func longTime(t, now time.Time) string {
	return t.UTC().Format(longLayout) + " (" + humantime.Relative(t, now) + ")"
}

// longTimeOrNever is longTime, or "never" if t is not set.
func longTimeOrNever(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return longTime(*t, now)
}

// displayName makes a key name safe to print on a terminal: control and
// formatting characters (escape sequences, bidirectional overrides) become
// "?". The admin API refuses them, but a name may come from an older
// keygate or another client of the store.
func displayName(name string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return '?'
		}
		return r
	}, name)
}

// maxTableName is the most of a name a table shows, in characters; show
// prints it whole.
const maxTableName = 40

// shortName is displayName cut to maxTableName characters.
func shortName(name string) string {
	name = displayName(name)
	if utf8.RuneCountInString(name) <= maxTableName {
		return name
	}
	runes := []rune(name)
	return string(runes[:maxTableName-1]) + "…"
}

// flagString returns the value of a string flag, local or inherited.
func flagString(cmd *cobra.Command, name string) string {
	v, _ := cmd.Flags().GetString(name)
	return v
}
