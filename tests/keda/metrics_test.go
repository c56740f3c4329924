// What KEDA's external scaler makes of our GetMetricSpec and GetMetrics answers.
package keda

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/kedacore/keda/v2/pkg/scalers"
	v2 "k8s.io/api/autoscaling/v2"
)

// ourMetricName is the README's metric name for a trigger: llm-demand-<profile>-<pool>,
// the pool from the trigger's metadata or the profile's (unified in every config here).
func ourMetricName(metadata map[string]string) string {
	pool := metadata["pool"]
	if pool == "" {
		pool = "unified"
	}
	return fmt.Sprintf("llm-demand-%s-%s", metadata["profile"], pool)
}

// shippedConfig is deploy/base/config.yaml with Prometheus at url: the config users run.
func shippedConfig(t testing.TB, url string) string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "base", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const shipped = "url: http://prometheus.monitoring:9090"
	if !strings.Contains(string(text), shipped) {
		t.Fatalf("deploy/base/config.yaml no longer says %q", shipped)
	}
	return strings.Replace(string(text), shipped, "url: "+url, 1)
}

// Every external and external-push trigger in deploy/, read with KEDA's types and built
// into KEDA's scaler, gets the metric name and target our formulas give.
func TestDeployTriggersGetTheSpecOurFormulasGive(t *testing.T) {
	objects := deployObjects(t)
	if len(objects.ScaledObjects) < 4 || len(objects.TriggerAuthentications) < 1 {
		t.Fatalf("deploy/ declares %d ScaledObjects and %d TriggerAuthentications; expected the examples' 5 and 1",
			len(objects.ScaledObjects), len(objects.TriggerAuthentications))
	}
	// GetMetricSpec never asks Prometheus: nothing listens at this address.
	scaler := startScaler(t, shippedConfig(t, "http://127.0.0.1:1"))
	ctx := withTimeout(t, time.Minute)
	checked := 0
	for _, located := range objects.ScaledObjects {
		so := located.Object
		for index, trigger := range so.Spec.Triggers {
			if trigger.Type != "external" && trigger.Type != "external-push" {
				continue
			}
			if trigger.AuthenticationRef != nil {
				continue // over TLS: TestTLSFromATriggerAuthentication
			}
			where := fmt.Sprintf("%s: %s/%s trigger %d", located.File, so.Namespace, so.Name, index)
			kedaScaler := newScaler(t, scalerConfig(t, &so, index, scaler.GRPCAddr, nil))
			specs := kedaScaler.GetMetricSpecForScaling(ctx)
			if len(specs) != 1 {
				t.Fatalf("%s: %d metric specs, expected 1", where, len(specs))
			}
			checkSpec(t, where, specs[0], index, ourMetricName(trigger.Metadata))
			if _, isPush := kedaScaler.(scalers.PushScaler); isPush != (trigger.Type == "external-push") {
				t.Errorf("%s: KEDA built a push scaler: %v, for type %s", where, isPush, trigger.Type)
			}
			checked++
		}
	}
	if checked < 4 {
		t.Fatalf("checked %d triggers; deploy/ has at least 4 without TLS", checked)
	}
}

// checkSpec: KEDA's name is `s<index>-` and ours; the target is AverageValue 1, which
// KEDA holds as 1000 milli-units.
func checkSpec(t testing.TB, where string, spec v2.MetricSpec, index int, name string) {
	t.Helper()
	if spec.Type != v2.ExternalMetricSourceType || spec.External == nil {
		t.Fatalf("%s: spec type %q, expected External", where, spec.Type)
	}
	if want := fmt.Sprintf("s%d-%s", index, name); spec.External.Metric.Name != want {
		t.Errorf("%s: metric name %q, expected %q", where, spec.External.Metric.Name, want)
	}
	target := spec.External.Target
	if target.Type != v2.AverageValueMetricType || target.AverageValue == nil {
		t.Fatalf("%s: target %+v, expected AverageValue", where, target)
	}
	if milli := target.AverageValue.MilliValue(); milli != 1000 {
		t.Errorf("%s: target %dm, expected 1000m (targetSizeFloat 1)", where, milli)
	}
}

// fleetFixture is the exporter, Prometheus scraping it and the scaler on testConfig.
type fleetFixture struct {
	exporter   *Exporter
	prometheus *Prometheus
	scaler     *Scaler
}

func startFleet(t testing.TB, configPrefix string) *fleetFixture {
	t.Helper()
	exporter := startExporter(t)
	prometheus := startPrometheus(t, exporter.Addr)
	scaler := startScaler(t, configPrefix+testConfig(prometheus.URL))
	return &fleetFixture{exporter, prometheus, scaler}
}

// scaledObject is the deploy/ ScaledObject declared in file (relative to deploy/).
func scaledObject(t testing.TB, file string) kedav1alpha1.ScaledObject {
	t.Helper()
	for _, located := range deployObjects(t).ScaledObjects {
		if located.File == filepath.Join("deploy", file) {
			return located.Object
		}
	}
	t.Fatalf("no ScaledObject in deploy/%s", file)
	return kedav1alpha1.ScaledObject{}
}

// expectMilli polls KEDA's GetMetricsAndActivity until it reports want milli-units and
// the activity, as Prometheus catches up with the exporter.
func expectMilli(t testing.TB, s scalers.Scaler, metricName string, want int64, active bool) {
	t.Helper()
	ctx := withTimeout(t, 30*time.Second)
	waitFor(t, 20*time.Second, fmt.Sprintf("%s = %dm, active %v", metricName, want, active), func() error {
		values, isActive, err := s.GetMetricsAndActivity(ctx, metricName)
		if err != nil {
			return err
		}
		if len(values) != 1 {
			return fmt.Errorf("%d values, expected 1", len(values))
		}
		if values[0].MetricName != metricName {
			return fmt.Errorf("value named %q, expected %q", values[0].MetricName, metricName)
		}
		if got := values[0].Value.MilliValue(); got != want || isActive != active {
			return fmt.Errorf("%dm, active %v", got, isActive)
		}
		return nil
	})
}

// kedaMilli is a demand in KEDA's milli-units: to the nearest thousandth.
func kedaMilli(demand float64) int64 { return int64(math.Round(demand * 1000)) }

// GetMetricsAndActivity through KEDA's client: the HPA's metric name (with KEDA's
// prefix) in, the README's demand for the exporter's series out, in KEDA's milli-units,
// for a demand of 0, fractional demands, a demand above 1,000 and one at max_demand.
func TestGetMetricsAndActivityThroughKEDA(t *testing.T) {
	fleet := startFleet(t, "")
	so := scaledObject(t, "examples/unified-vllm/scaledobject.yaml")
	kedaScaler := newScaler(t, scalerConfig(t, &so, 0, fleet.scaler.GRPCAddr, nil))
	specs := kedaScaler.GetMetricSpecForScaling(withTimeout(t, 10*time.Second))
	if len(specs) != 1 {
		t.Fatalf("%d specs", len(specs))
	}
	name := specs[0].External.Metric.Name

	cases := []struct {
		what   string
		queues []float64
		active bool
	}{
		{"no series at all: a fleet at zero", nil, false},
		{"idle replicas", []float64{0, 0}, false},
		{"a fraction of a replica", []float64{3, 4}, true},
		{"one and a third", []float64{20}, true},
		{"above 1,000 replicas", []float64{9000, 9517.5}, true},
		{"capped at max_demand", []float64{15 * 6000}, true},
		{"back to idle", []float64{0}, false},
	}
	for _, c := range cases {
		fleet.exporter.Fleet("llama-70b", c.queues...)
		want := kedaMilli(queueDemand(c.queues, 15))
		t.Logf("%s: queues %v, demand %dm", c.what, c.queues, want)
		expectMilli(t, kedaScaler, name, want, c.active)
	}

	// KEDA strips only its own prefix: a name of another trigger index is refused by
	// KEDA, and a name of another metric by us.
	ctx := withTimeout(t, 10*time.Second)
	if _, _, err := kedaScaler.GetMetricsAndActivity(ctx, "s0-llm-demand-other-unified"); err == nil {
		t.Error("GetMetrics for another metric name answered")
	}
}

// With the queue summed over many pods and a demand that is not a whole number of
// milli-units, KEDA rounds to the nearest thousandth, and IsActive follows the queue.
func TestFractionalDemandsRoundAsKEDARoundsThem(t *testing.T) {
	fleet := startFleet(t, "")
	so := scaledObject(t, "examples/unified-vllm/scaledobject.yaml")
	kedaScaler := newScaler(t, scalerConfig(t, &so, 0, fleet.scaler.GRPCAddr, nil))
	name := "s0-" + ourMetricName(so.Spec.Triggers[0].Metadata)
	queues := []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.125}
	fleet.exporter.Fleet("llama-70b", queues...)
	// 12.125 / 15 = 0.808333...: 808m.
	expectMilli(t, kedaScaler, name, kedaMilli(queueDemand(queues, 15)), true)
	if got := kedaMilli(queueDemand(queues, 15)); got != 808 {
		t.Fatalf("the formula gives %dm", got)
	}
}
