// Fixtures shared by the tests: the real keda-llm-scaler binary, Debian's Prometheus and
// an exporter with known series, each on a loopback port and stopped when the test ends.
// They mirror the Rust integration tests' fixtures (tests/common): the same seed-engine
// series, the same scrape interval, the same way of finding the binaries.
package keda

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the repository's top level: this module lives in tests/keda.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// scalerBinary finds keda-llm-scaler: KEDA_LLM_SCALER_BIN, else the newest of
// target/release and target/debug (CARGO_TARGET_DIR is honoured).
func scalerBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("KEDA_LLM_SCALER_BIN"); bin != "" {
		return bin
	}
	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		target = filepath.Join(repoRoot(t), "target")
	}
	var newest string
	var newestTime time.Time
	for _, profile := range []string{"release", "debug"} {
		path := filepath.Join(target, profile, "keda-llm-scaler")
		if info, err := os.Stat(path); err == nil && info.ModTime().After(newestTime) {
			newest, newestTime = path, info.ModTime()
		}
	}
	if newest == "" {
		t.Fatalf("no keda-llm-scaler under %s/{release,debug}: run `cargo build` first or set KEDA_LLM_SCALER_BIN", target)
	}
	return newest
}

// firstLine sends the first value pick finds in a line of r, and keeps reading to the
// end so that the writer never blocks on a full pipe.
func firstLine[T any](r io.Reader, pick func(string) (T, bool)) <-chan T {
	found := make(chan T, 1)
	go func() {
		scanner := bufio.NewScanner(r)
		scanner.Buffer(make([]byte, 64*1024), 1024*1024)
		sent := false
		for scanner.Scan() {
			if v, ok := pick(scanner.Text()); ok && !sent {
				found <- v
				sent = true
			}
		}
		close(found)
	}()
	return found
}

// startWithStderr starts cmd with its stderr on a pipe and returns the reading end.
// Unlike StderrPipe, Wait does not close it: the reader sees the end once the child has
// exited and every line is read, as this process keeps no copy of the writing end.
func startWithStderr(cmd *exec.Cmd) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// abandon kills a child that never became ready and reaps it.
func abandon(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// awaitLine is the value firstLine found, or an error when the stream ended or limit
// passed first.
func awaitLine[T any](found <-chan T, limit time.Duration, what string) (T, error) {
	var zero T
	select {
	case v, ok := <-found:
		if !ok {
			return zero, fmt.Errorf("the output ended before %s", what)
		}
		return v, nil
	case <-time.After(limit):
		return zero, fmt.Errorf("no %s within %v", what, limit)
	}
}

// waitFor polls check every 50 ms until it returns nil or the limit passes.
func waitFor(t testing.TB, limit time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpOK(url string) error {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// Exporter serves gauges in the Prometheus text format at /metrics.
type Exporter struct {
	Addr   string
	mu     sync.Mutex
	gauges map[string]float64
}

// startExporter serves on a port the OS picks (httptest binds 127.0.0.1:0).
func startExporter(t testing.TB) *Exporter {
	e := &Exporter{gauges: map[string]float64{}}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, e.render())
	}))
	t.Cleanup(server.Close)
	e.Addr = strings.TrimPrefix(server.URL, "http://")
	return e
}

// Set replaces a gauge; series is `name{labels}`.
func (e *Exporter) Set(series string, value float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.gauges[series] = value
}

func (e *Exporter) render() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	series := make([]string, 0, len(e.gauges))
	for s := range e.gauges {
		series = append(series, s)
	}
	sort.Strings(series)
	var text strings.Builder
	typed := map[string]bool{}
	for _, s := range series {
		name, _, _ := strings.Cut(s, "{")
		if !typed[name] {
			fmt.Fprintf(&text, "# TYPE %s gauge\n", name)
			typed[name] = true
		}
		fmt.Fprintf(&text, "%s %v\n", s, e.gauges[s])
	}
	return text.String()
}

// Fleet sets the seed engine's queue gauge of model `model` to the given depths, one pod
// each, with an empty KV cache, and no token counters (a signal with no series is 0).
func (e *Exporter) Fleet(model string, queues ...float64) {
	e.mu.Lock()
	for s := range e.gauges {
		if strings.Contains(s, fmt.Sprintf(`model_id="%s"`, model)) {
			delete(e.gauges, s)
		}
	}
	e.mu.Unlock()
	for i, q := range queues {
		labels := fmt.Sprintf(`model_id="%s",pod="%s-%d"`, model, model, i)
		e.Set("llm_queue_depth{"+labels+"}", q)
		e.Set("llm_kv_cache_usage_ratio{"+labels+"}", 0)
	}
}

// Prometheus is Debian's prometheus on a loopback port, scraping one exporter every second.
type Prometheus struct {
	URL  string
	port int
	dir  string
	cmd  *exec.Cmd
	t    testing.TB
}

func startPrometheus(t testing.TB, target string) *Prometheus {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: engines\n    static_configs:\n      - targets: ['%s']\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Prometheus{dir: dir, t: t}
	t.Cleanup(p.Stop)
	if err := p.Start(); err != nil {
		t.Fatalf("Prometheus did not start: %v", err)
	}
	// Prometheus hands new targets to its scrapers after up to 5 s: wait for the first
	// scrape, so that tests time our path, not its start.
	waitFor(t, 30*time.Second, "Prometheus scrapes the exporter", p.scraped)
	return p
}

// Start runs Prometheus on its data dir, waiting until it is ready. The first start
// binds port 0 and reads the port Prometheus logs; a restart takes the same one back.
func (p *Prometheus) Start() error {
	binary := os.Getenv("PROMETHEUS_BIN")
	if binary == "" {
		binary = "prometheus"
	}
	p.cmd = exec.Command(binary,
		"--config.file="+filepath.Join(p.dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(p.dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", p.port),
		"--log.level=info")
	stderr, err := startWithStderr(p.cmd)
	if err != nil {
		p.t.Fatalf("cannot start %s (apt-get install prometheus): %v", binary, err)
	}
	// `msg="Listening on" address=127.0.0.1:PORT`: the port it bound.
	port, err := awaitLine(firstLine(stderr, func(line string) (int, bool) {
		_, rest, found := strings.Cut(line, `msg="Listening on" address=127.0.0.1:`)
		if !found {
			return 0, false
		}
		port, err := strconv.Atoi(strings.Fields(rest + " ")[0])
		return port, err == nil
	}), 30*time.Second, "listening line from Prometheus")
	if err != nil {
		abandon(p.cmd)
		return err
	}
	p.port = port
	p.URL = fmt.Sprintf("http://127.0.0.1:%d", p.port)
	return waitReady(p.cmd, 30*time.Second, p.URL+"/-/ready")
}

// scraped is nil once `up` of the exporter is 1.
func (p *Prometheus) scraped() error {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get(p.URL + "/api/v1/query?query=up%3D%3D1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct {
		Data struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return err
	}
	if len(answer.Data.Result) == 0 {
		return errNotYet
	}
	return nil
}

// Stop kills Prometheus; its data stays for Start.
func (p *Prometheus) Stop() {
	stop(p.cmd, syscall.SIGKILL)
	p.cmd = nil
}

// waitReady waits for url to answer 200, failing early when the process exits.
func waitReady(cmd *exec.Cmd, limit time.Duration, url string) error {
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			cmd.Process = nil
			return fmt.Errorf("exited before it was ready: %v", err)
		default:
		}
		if httpOK(url) == nil {
			// Keep reaping in the background; stop() waits on the same channel.
			cmdExited.Store(cmd, exited)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopWith(cmd, exited, syscall.SIGKILL)
	return fmt.Errorf("%s did not answer 200 within %v", url, limit)
}

// cmdExited holds, per running child, the channel its Wait result arrives on.
var cmdExited sync.Map

func stop(cmd *exec.Cmd, signal syscall.Signal) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	if exited, ok := cmdExited.LoadAndDelete(cmd); ok {
		stopWith(cmd, exited.(chan error), signal)
	}
}

func stopWith(cmd *exec.Cmd, exited chan error, signal syscall.Signal) {
	_ = cmd.Process.Signal(signal)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Scaler is the keda-llm-scaler binary serving a config file.
type Scaler struct {
	// GRPCAddr is host:port, what a trigger's scalerAddress names.
	GRPCAddr string
	// Config is the file it serves; rewrite it to hot-reload.
	Config   string
	httpAddr string
	cmd      *exec.Cmd
	t        testing.TB
	logs     *os.File
}

// startScaler writes config to a file and serves it on loopback ports the system picks.
func startScaler(t testing.TB, config string, extraArgs ...string) *Scaler {
	t.Helper()
	dir := t.TempDir()
	s := &Scaler{Config: filepath.Join(dir, "config.yaml"), t: t}
	if err := os.WriteFile(s.Config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(dir, "scaler.log"))
	if err != nil {
		t.Fatal(err)
	}
	s.logs = logs
	t.Cleanup(func() {
		s.Kill()
		logs.Close()
		if t.Failed() {
			text, _ := os.ReadFile(logs.Name())
			t.Logf("scaler log:\n%s", text)
		}
	})
	s.GRPCAddr, s.httpAddr = "127.0.0.1:0", "127.0.0.1:0"
	if err := s.Start(extraArgs...); err != nil {
		t.Fatalf("keda-llm-scaler did not start: %v", err)
	}
	return s
}

// Start runs the binary on the scaler's addresses and waits for /readyz, which answers
// 200 only once the gRPC listener serves. The first start binds port 0 and reads the
// addresses from the binary's `starting` line; a restart takes the same ones back.
func (s *Scaler) Start(extraArgs ...string) error {
	args := append([]string{"serve", "--config", s.Config,
		"--grpc-addr=" + s.GRPCAddr, "--http-addr=" + s.httpAddr}, extraArgs...)
	s.cmd = exec.Command(scalerBinary(s.t), args...)
	s.cmd.Env = append(os.Environ(), "LOG_FORMAT=json")
	s.cmd.Stdout = s.logs
	stderr, err := startWithStderr(s.cmd)
	if err != nil {
		s.t.Fatal(err)
	}
	addrs, err := awaitLine(firstLine(io.TeeReader(stderr, s.logs), startingAddrs),
		30*time.Second, "starting line from keda-llm-scaler")
	if err != nil {
		abandon(s.cmd)
		return err
	}
	s.GRPCAddr, s.httpAddr = addrs[0], addrs[1]
	return waitReady(s.cmd, 30*time.Second, "http://"+s.httpAddr+"/readyz")
}

// startingAddrs reads the gRPC and HTTP addresses from the JSON `starting` line.
func startingAddrs(line string) ([2]string, bool) {
	var event struct {
		Fields struct {
			Message  string `json:"message"`
			GRPCAddr string `json:"grpc_addr"`
			HTTPAddr string `json:"http_addr"`
		} `json:"fields"`
	}
	if json.Unmarshal([]byte(line), &event) != nil || event.Fields.Message != "starting" {
		return [2]string{}, false
	}
	return [2]string{event.Fields.GRPCAddr, event.Fields.HTTPAddr}, true
}

// Kill ends the process at once, as a crash or an OOM kill would.
func (s *Scaler) Kill() { stop(s.cmd, syscall.SIGKILL) }

// Terminate is a clean shutdown (SIGTERM), as Kubernetes ends a pod.
func (s *Scaler) Terminate() { stop(s.cmd, syscall.SIGTERM) }

// Rewrite replaces the config file in one rename, as a ConfigMap update does.
func (s *Scaler) Rewrite(config string) {
	s.t.Helper()
	next := s.Config + ".next"
	if err := os.WriteFile(next, []byte(config), 0o644); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(next, s.Config); err != nil {
		s.t.Fatal(err)
	}
}

// testConfig is the scaler's config for the value tests: the profiles that deploy/'s
// ScaledObjects name, on the seed engine's series, without SLO or prediction terms so
// that the demand follows from the queue alone: D = clamp(Q / 15, 0, 5000).
func testConfig(prometheusURL string) string {
	return fmt.Sprintf(`prometheus:
  url: %s
  timeout: 2s
evaluation:
  cache_ttl: 0s
  push_interval: 200ms
  max_staleness: 0s
profiles:
  llama-70b:
    engine: seed
    selector:
      model_id: llama-70b
    rate_window: 1m
    capacity:
      queue_per_replica: 15
      output_tokens_per_second: 5000
      input_tokens_per_second: 40000
    max_demand: 5000
  other:
    engine: seed
    selector:
      model_id: other
    capacity:
      queue_per_replica: 10
      output_tokens_per_second: 5000
    max_demand: 5000
`, prometheusURL)
}

// queueDemand is the README's formula for testConfig's llama-70b profile with only the
// queue gauge set: D = clamp(Q / queue_per_replica, min_demand, max_demand).
func queueDemand(queues []float64, perReplica float64) float64 {
	q := 0.0
	for _, v := range queues {
		q += v
	}
	return min(max(q/perReplica, 0), 5000)
}

// errNotYet marks a poll that should be retried.
var errNotYet = errors.New("not yet")

// withTimeout is a context that ends with the test or after limit.
func withTimeout(t testing.TB, limit time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	return ctx
}
