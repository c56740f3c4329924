// KEDA's fallback and scaling-modifier code on our answers.
package keda

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/kedacore/keda/v2/pkg/fallback"
	"github.com/kedacore/keda/v2/pkg/scalers"
	"github.com/kedacore/keda/v2/pkg/scaling/cache"
	"github.com/kedacore/keda/v2/pkg/scaling/modifiers"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/metrics/pkg/apis/external_metrics"
	"sigs.k8s.io/yaml"
)

// With Prometheus stopped we answer UNAVAILABLE; KEDA's fallback code, with the
// ScaledObject of deploy/ in a fake API server, counts the failures and feeds the HPA
// target x fallback.replicas once failureThreshold is passed, never a demand of 0. With
// Prometheus back, KEDA gets our value again and the health is reset.
func TestFallbackTakesOverWhenPrometheusIsDown(t *testing.T) {
	fleet := startFleet(t, "")
	so := scaledObject(t, "examples/unified-vllm/scaledobject.yaml")
	if so.Spec.Fallback == nil {
		t.Fatal("deploy/examples/unified-vllm has no fallback")
	}
	cluster := fakeCluster(t, so.DeepCopy())
	handler := fallback.ScaledObjectHandler{
		Ctx:          context.Background(),
		KubeClient:   cluster,
		UpdateLock:   &sync.RWMutex{},
		ScaledObject: &so,
	}
	kedaScaler := newScaler(t, scalerConfig(t, &so, 0, fleet.scaler.GRPCAddr, nil))
	specs := kedaScaler.GetMetricSpecForScaling(withTimeout(t, 5*time.Second))
	if len(specs) != 1 {
		t.Fatalf("%d specs", len(specs))
	}
	spec, name := specs[0], specs[0].External.Metric.Name
	// One round as KEDA's scale handler runs it for the HPA.
	poll := func() ([]external_metrics.ExternalMetricValue, bool, error, error) {
		raw, _, rawErr := kedaScaler.GetMetricsAndActivity(withTimeout(t, 5*time.Second), name)
		values, active, err := fallback.GetMetricsWithFallback(handler, raw, rawErr, name, spec)
		return values, active, err, rawErr
	}

	queues := []float64{20, 25}
	fleet.exporter.Fleet("llama-70b", queues...)
	ours := kedaMilli(queueDemand(queues, 15))
	expectMilli(t, kedaScaler, name, ours, true)

	fleet.prometheus.Stop()
	threshold := so.Spec.Fallback.FailureThreshold
	for call := int32(1); call <= threshold+2; call++ {
		values, fellBack, err, rawErr := poll()
		if code := status.Code(rawErr); code != codes.Unavailable {
			t.Fatalf("call %d with Prometheus down: %v (code %v), expected UNAVAILABLE", call, rawErr, code)
		}
		if call <= threshold {
			if err == nil || fellBack || len(values) != 0 {
				t.Fatalf("call %d of %d allowed failures: values %v, fallback %v, err %v", call, threshold, values, fellBack, err)
			}
			continue
		}
		want := int64(so.Spec.Fallback.Replicas) * 1000 // target 1 x replicas
		if err != nil || !fellBack || len(values) != 1 || values[0].Value.MilliValue() != want {
			t.Fatalf("call %d, past failureThreshold %d: values %v, fallback %v, err %v; expected %dm", call, threshold, values, fellBack, err, want)
		}
	}
	health := so.Status.Health[name]
	if health.Status != kedav1alpha1.HealthStatusFailing || *health.NumberOfFailures != threshold+2 {
		t.Fatalf("KEDA's health for %s: %+v", name, health)
	}

	if err := fleet.prometheus.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "our value again with Prometheus back", func() error {
		values, fellBack, err, _ := poll()
		if err != nil {
			return err
		}
		if fellBack || len(values) != 1 || values[0].Value.MilliValue() != ours {
			return fmt.Errorf("values %v, fallback %v", values, fellBack)
		}
		return nil
	})
	if health := so.Status.Health[name]; health.Status != kedav1alpha1.HealthStatusHappy || *health.NumberOfFailures != 0 {
		t.Fatalf("KEDA's health after recovery: %+v", health)
	}
}

// A ScaledObject that combines our demand with KEDA's own Prometheus scaler through
// advanced.scalingModifiers.formula: KEDA's formula code gives the expected composite.
// Our trigger is the second, so KEDA names its metric s1-....
func TestScalingModifiersCombineOurMetric(t *testing.T) {
	fleet := startFleet(t, "")
	text := fmt.Sprintf(`apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: llama-70b
  namespace: inference
spec:
  scaleTargetRef:
    name: llama-70b
  advanced:
    scalingModifiers:
      formula: "llm + waiting / 100"
      target: "1"
  triggers:
    - type: prometheus
      name: waiting
      metadata:
        serverAddress: %s
        query: sum(llm_queue_depth{model_id="other"})
        threshold: "100"
    - type: external
      name: llm
      metadata:
        scalerAddress: %s
        profile: llama-70b
`, fleet.prometheus.URL, fleet.scaler.GRPCAddr)
	var so kedav1alpha1.ScaledObject
	if err := yaml.UnmarshalStrict([]byte(text), &so); err != nil {
		t.Fatal(err)
	}
	program, err := kedav1alpha1.ValidateAndCompileScalingModifiers(&so)
	if err != nil {
		t.Fatal(err)
	}
	formulaCache := &cache.ScalersCache{CompiledFormula: program}

	promConfig := scalerConfig(t, &so, 0, "", nil)
	promScaler, err := scalers.NewPrometheusScaler(promConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = promScaler.Close(context.Background()) })
	ours := newScaler(t, scalerConfig(t, &so, 1, "", nil))

	queues, others := []float64{30, 40, 50}, []float64{120, 130}
	fleet.exporter.Fleet("llama-70b", queues...)
	fleet.exporter.Fleet("other", others...)
	want := kedaMilli(queueDemand(queues, 15) + (others[0]+others[1])/100)

	triggers := []struct {
		name   string
		scaler scalers.Scaler
	}{{"waiting", promScaler}, {"llm", ours}}
	waitFor(t, 20*time.Second, fmt.Sprintf("the composite metric is %dm", want), func() error {
		var metrics []external_metrics.ExternalMetricValue
		pairs := map[string]string{}
		for _, trigger := range triggers {
			ctx := withTimeout(t, 5*time.Second)
			specs := trigger.scaler.GetMetricSpecForScaling(ctx)
			if len(specs) != 1 {
				return fmt.Errorf("%s: %d specs", trigger.name, len(specs))
			}
			metricName := specs[0].External.Metric.Name
			values, _, err := trigger.scaler.GetMetricsAndActivity(ctx, metricName)
			if err != nil {
				return fmt.Errorf("%s: %w", trigger.name, err)
			}
			pair, err := modifiers.GetPairTriggerAndMetric(&so, metricName, trigger.name)
			if err != nil {
				return err
			}
			for k, v := range pair {
				pairs[k] = v
			}
			metrics = append(metrics, values...)
		}
		if _, ok := pairs["s1-llm-demand-llama-70b-unified"]; !ok {
			return fmt.Errorf("our metric is not s1-llm-demand-llama-70b-unified: %v", pairs)
		}
		composite := modifiers.HandleScalingModifiers(&so, metrics, pairs, false, nil, formulaCache, logr.Discard())
		if len(composite) != 1 || composite[0].MetricName != kedav1alpha1.CompositeMetricName {
			return fmt.Errorf("composite %v", composite)
		}
		if got := composite[0].Value.MilliValue(); got != want {
			return fmt.Errorf("composite %dm (inputs %v)", got, metrics)
		}
		return nil
	})
}
