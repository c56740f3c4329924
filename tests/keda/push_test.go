// KEDA's push scaler (external-push) against our StreamIsActive and StreamMetricSpec.
package keda

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kedacore/keda/v2/pkg/scalers"
	v2 "k8s.io/api/autoscaling/v2"
)

// activity records what KEDA's push scaler puts on its active channel, with times.
type activity struct {
	mu   sync.Mutex
	seen []activation
}

type activation struct {
	At     time.Time
	Active bool
}

// runPush starts KEDA's Run on the scaler and records its channel until the test ends.
func runPush(t testing.TB, push scalers.PushScaler) *activity {
	ctx, cancel := context.WithCancel(context.Background())
	active := make(chan bool)
	done := make(chan struct{})
	a := &activity{}
	go push.Run(ctx, active)
	go func() {
		defer close(done)
		for v := range active {
			a.mu.Lock()
			a.seen = append(a.seen, activation{time.Now(), v})
			a.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done: // Run closes the channel when it returns
		case <-time.After(10 * time.Second):
			t.Error("KEDA's Run did not return after its context ended")
		}
	})
	return a
}

// first waits for the first message at or after `since` with the given value.
func (a *activity) first(t testing.TB, since time.Time, active bool, limit time.Duration) time.Time {
	t.Helper()
	var at time.Time
	waitFor(t, limit, fmt.Sprintf("KEDA's active channel says %v", active), func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, s := range a.seen {
			if !s.At.Before(since) && s.Active == active {
				at = s.At
				return nil
			}
		}
		return errNotYet
	})
	return at
}

// backoffs are the retry waits KEDA's push scaler logged since `since` (its message
// was renamed in v2.21).
func backoffs(t testing.TB, since time.Time) []time.Duration {
	t.Helper()
	var out []time.Duration
	for _, message := range []string{"external push retry backoff", "StreamIsActive retry backoff"} {
		for _, line := range kedaLog.since(since, message) {
			d, err := time.ParseDuration(fmt.Sprint(line.Values["duration"]))
			if err != nil {
				t.Fatalf("KEDA logged a backoff of %v", line.Values["duration"])
			}
			out = append(out, d)
		}
	}
	return out
}

// The push path as KEDA runs it: activation arrives when the queue turns positive;
// after a crash of ours KEDA reconnects by itself on its doubling backoff; a clean
// shutdown of ours ends the stream with OK, so KEDA's backoff starts again at 2 s.
func TestPushActivationReconnectAndBackoff(t *testing.T) {
	fleet := startFleet(t, "")
	so := scaledObject(t, "examples/external-push/scaledobject.yaml")
	kedaScaler := newScaler(t, scalerConfig(t, &so, 0, fleet.scaler.GRPCAddr, nil))
	push, ok := kedaScaler.(scalers.PushScaler)
	if !ok {
		t.Fatal("KEDA did not build a push scaler for external-push")
	}
	fleet.exporter.Fleet("llama-70b", 0, 0)
	start := time.Now()
	seen := runPush(t, push)
	seen.first(t, start, false, 10*time.Second)

	queued := time.Now()
	fleet.exporter.Fleet("llama-70b", 0, 4)
	at := seen.first(t, queued, true, 15*time.Second)
	t.Logf("activation reached KEDA %v after the exporter's queue turned positive (1 s scrapes, 200 ms push interval)", at.Sub(queued).Round(time.Millisecond))

	// A crash: KEDA's stream fails, and it retries on a doubling backoff.
	crashed := time.Now()
	fleet.scaler.Kill()
	time.Sleep(7 * time.Second)
	restarted := time.Now()
	if err := fleet.scaler.Start(); err != nil {
		t.Fatal(err)
	}
	back := seen.first(t, restarted, true, 70*time.Second)
	waits := backoffs(t, crashed)
	t.Logf("after a crash: KEDA's waits %v; stream back %v after the restart, %v after the crash",
		waits, back.Sub(restarted).Round(time.Millisecond), back.Sub(crashed).Round(time.Millisecond))
	if len(waits) < 3 || waits[0] != 2*time.Second || waits[1] != 4*time.Second || waits[2] != 8*time.Second {
		t.Fatalf("KEDA's backoff after a failed stream: %v, expected 2s, 4s, 8s, ...", waits)
	}

	// A clean shutdown (SIGTERM): the stream ends with OK and KEDA's wait is 2 s again,
	// where a failure would have made it 16 s.
	stopped := time.Now()
	fleet.scaler.Terminate()
	waitFor(t, 10*time.Second, "KEDA logs its next backoff", func() error {
		if len(backoffs(t, stopped)) == 0 {
			return errNotYet
		}
		return nil
	})
	if next := backoffs(t, stopped)[0]; next != 2*time.Second {
		t.Fatalf("after our clean shutdown KEDA waits %v, expected its reset 2s", next)
	}
	restarted = time.Now()
	if err := fleet.scaler.Start(); err != nil {
		t.Fatal(err)
	}
	back = seen.first(t, restarted, true, 30*time.Second)
	t.Logf("after a clean shutdown: stream back %v after the restart, %v after the shutdown",
		back.Sub(restarted).Round(time.Millisecond), back.Sub(stopped).Round(time.Millisecond))
}

// metricSpecStreamer is KEDA's MetricSpecStreamer (v2.21 and later), declared here so
// that this module also builds against KEDA releases without it.
type metricSpecStreamer interface {
	MetricSpecChan() <-chan []v2.MetricSpec
}

func specNames(specs []v2.MetricSpec) string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.External.Metric.Name
	}
	return strings.Join(names, ",")
}

// StreamMetricSpec with KEDA's client: the spec arrives when the stream opens, a config
// change that changes it reaches KEDA's MetricSpecChan, and a reload that leaves the
// trigger without a spec never sends KEDA an empty list (kedacore/keda#8115).
func TestStreamMetricSpecReachesKEDA(t *testing.T) {
	fleet := startFleet(t, "")
	so := scaledObject(t, "examples/external-push/scaledobject.yaml")
	kedaScaler := newScaler(t, scalerConfig(t, &so, 0, fleet.scaler.GRPCAddr, nil))
	streamer, ok := kedaScaler.(metricSpecStreamer)
	if !ok {
		t.Skip("this KEDA has no StreamMetricSpec client (v2.21.0 and later have it): go test -modfile=go.v2.21.mod")
	}
	specs := streamer.MetricSpecChan()
	runPush(t, kedaScaler.(scalers.PushScaler))

	next := func(what string, limit time.Duration) []v2.MetricSpec {
		t.Helper()
		select {
		case got, open := <-specs:
			if !open {
				t.Fatalf("%s: KEDA closed MetricSpecChan (it does on UNIMPLEMENTED)", what)
			}
			return got
		case <-time.After(limit):
			t.Fatalf("%s: nothing on MetricSpecChan within %v", what, limit)
		}
		return nil
	}
	unified := "s0-llm-demand-llama-70b-unified"
	if got := specNames(next("the stream opens", 10*time.Second)); got != unified {
		t.Fatalf("first spec %q, expected %q", got, unified)
	}

	// The profile's pool changes in the ConfigMap: the metric name changes with it.
	original := testConfig(fleet.prometheus.URL)
	decode := strings.Replace(original, "    max_demand: 5000\n  other:", "    pool: decode\n    max_demand: 5000\n  other:", 1)
	fleet.scaler.Rewrite(decode)
	changed := next("after the pool changed", 15*time.Second)
	if got := specNames(changed); got != "s0-llm-demand-llama-70b-decode" {
		t.Fatalf("after the reload KEDA got %q", got)
	}
	checkSpec(t, "streamed spec", changed[0], 0, "llm-demand-llama-70b-decode")
	// GetMetricSpec says the same as the stream.
	if got := specNames(kedaScaler.GetMetricSpecForScaling(withTimeout(t, 5*time.Second))); got != "s0-llm-demand-llama-70b-decode" {
		t.Fatalf("GetMetricSpec after the reload: %q", got)
	}

	// The profile disappears: the stream ends with an error, and nothing (above all no
	// empty list) reaches KEDA.
	withoutProfile := strings.Replace(original, "  llama-70b:\n", "  renamed-70b:\n", 1)
	fleet.scaler.Rewrite(withoutProfile)
	select {
	case got := <-specs:
		t.Fatalf("a reload without the trigger's profile sent KEDA %d specs (%q)", len(got), specNames(got))
	case <-time.After(5 * time.Second):
	}

	// The profile is back: KEDA's retry opens a new stream and gets the spec again.
	restored := time.Now()
	fleet.scaler.Rewrite(original)
	if got := specNames(next("after the profile came back", 70*time.Second)); got != unified {
		t.Fatalf("after the profile came back KEDA got %q", got)
	}
	t.Logf("spec back %v after the profile returned", time.Since(restored).Round(time.Millisecond))
}
