package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkScript is the Lua script every run uses. With one key, the key is a
// static header, and wrk sends one prepared request over and over; with a
// key file of several, every request is prepared once at start and
// request() only picks the next one, round-robin, so rotating keys costs
// wrk next to nothing. done() prints the results as one JSON line.
const wrkScript = `-- written by test/loadbench
local keysfile = %q
local single = %t
local reqs = {}
local n = 0
local i = 0

if single then
  for line in io.lines(keysfile) do
    wrk.headers["Authorization"] = "ApiKey " .. line
    break
  end
else
  init = function(args)
    local headers = {}
    for line in io.lines(keysfile) do
      n = n + 1
      reqs[n] = wrk.format(nil, nil, {["Host"] = wrk.headers["Host"], ["Authorization"] = "ApiKey " .. line})
    end
  end
  request = function()
    i = i + 1
    if i > n then i = 1 end
    return reqs[i]
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('LOADBENCH {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,"mean_us":%%.1f,"max_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
`

// wrkResult is what one wrk run measured.
type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	P50US      int64   `json:"p50_us"`
	P99US      int64   `json:"p99_us"`
	MeanUS     float64 `json:"mean_us"`
	MaxUS      int64   `json:"max_us"`
	Connect    int64   `json:"connect"`
	Read       int64   `json:"read"`
	Write      int64   `json:"write"`
	Status     int64   `json:"status"` // responses other than 2xx or 3xx
	Timeout    int64   `json:"timeout"`

	cpu time.Duration // used by the wrk process itself
}

// rps returns the requests per second.
func (r wrkResult) rps() float64 {
	if r.DurationUS == 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

// errors returns the socket errors and timeouts (not the non-2xx answers).
func (r wrkResult) errors() int64 { return r.Connect + r.Read + r.Write + r.Timeout }

// wrkLoad describes one wrk instance.
type wrkLoad struct {
	name        string // for its log file
	url         string
	keysFile    string
	keys        int // lines in keysFile
	threads     int
	connections int
	duration    time.Duration
}

// startWrk starts wrk for load l; wait for it with waitWrk.
func startWrk(workDir string, l wrkLoad) (*proc, error) {
	script := filepath.Join(workDir, l.name+".lua")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(wrkScript, l.keysFile, l.keys == 1)), 0o600); err != nil {
		return nil, err
	}
	secs := int(l.duration.Round(time.Second) / time.Second)
	args := []string{
		"-t", strconv.Itoa(l.threads), "-c", strconv.Itoa(l.connections), "-d", strconv.Itoa(max(secs, 1)) + "s",
		"--timeout", "10s", "-s", script, l.url,
	}
	return startProc(l.name, workDir, "wrk", args, nil)
}

// waitWrk waits for a wrk started by startWrk and reads its result,
// killing it if ctx ends first.
func waitWrk(ctx context.Context, workDir string, p *proc) (wrkResult, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stop(time.Second)
		return wrkResult{}, ctx.Err()
	}
	logPath := filepath.Join(workDir, p.name+".log")
	f, err := os.Open(logPath)
	if err != nil {
		return wrkResult{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "LOADBENCH "); ok {
			var r wrkResult
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				return wrkResult{}, fmt.Errorf("reading wrk's result in %s: %w", logPath, err)
			}
			r.cpu = p.cpuUsed()
			return r, nil
		}
	}
	return wrkResult{}, fmt.Errorf("wrk printed no result (exit: %v): see %s", p.err, logPath)
}
