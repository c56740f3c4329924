// KEDA's side: the ScaledObjects and TriggerAuthentications of deploy/ read with KEDA's
// own API types, and each trigger turned into a scaler the way KEDA's scaler builder
// (pkg/scaling/scalers_builder.go) does it.
package keda

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/kedacore/keda/v2/pkg/scalers"
	"github.com/kedacore/keda/v2/pkg/scalers/authentication"
	"github.com/kedacore/keda/v2/pkg/scalers/scalersconfig"
	"github.com/kedacore/keda/v2/pkg/scaling/resolver"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"
)

// Objects are what deploy/ declares for KEDA, by file.
type Objects struct {
	ScaledObjects          []Located[kedav1alpha1.ScaledObject]
	TriggerAuthentications []Located[kedav1alpha1.TriggerAuthentication]
}

// Located is an object and the file it came from.
type Located[T any] struct {
	File   string
	Object T
}

// deployObjects reads every YAML document under deploy/ (the chart's templates aside:
// they are not YAML until helm renders them) and decodes the KEDA kinds strictly.
func deployObjects(t testing.TB) Objects {
	t.Helper()
	var objects Objects
	root := filepath.Join(repoRoot(t), "deploy")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "chart" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return nil
		}
		rel, _ := filepath.Rel(repoRoot(t), path)
		return decodeFile(path, rel, &objects)
	})
	if err != nil {
		t.Fatal(err)
	}
	return objects
}

func decodeFile(path, rel string, objects *Objects) error {
	text, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(text)))
	for {
		doc, err := reader.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil || meta.APIVersion != "keda.sh/v1alpha1" {
			continue
		}
		switch meta.Kind {
		case "ScaledObject":
			var so kedav1alpha1.ScaledObject
			if err := yaml.UnmarshalStrict(doc, &so); err != nil {
				return fmt.Errorf("%s: ScaledObject: %w", rel, err)
			}
			// The API server fills this from the CRD's default; KEDA's code relies on it.
			if so.Spec.Fallback != nil && so.Spec.Fallback.Behavior == "" {
				so.Spec.Fallback.Behavior = kedav1alpha1.FallbackBehaviorStatic
			}
			objects.ScaledObjects = append(objects.ScaledObjects, Located[kedav1alpha1.ScaledObject]{rel, so})
		case "TriggerAuthentication":
			var ta kedav1alpha1.TriggerAuthentication
			if err := yaml.UnmarshalStrict(doc, &ta); err != nil {
				return fmt.Errorf("%s: TriggerAuthentication: %w", rel, err)
			}
			objects.TriggerAuthentications = append(objects.TriggerAuthentications, Located[kedav1alpha1.TriggerAuthentication]{rel, ta})
		}
	}
}

// scheme knows the core kinds and KEDA's, for controller-runtime's fake client.
func scheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := kedav1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeCluster is controller-runtime's fake API server holding objs, with the status
// subresource of ScaledObjects (KEDA's fallback patches it).
func fakeCluster(t testing.TB, objs ...client.Object) client.Client {
	return fake.NewClientBuilder().
		WithScheme(scheme(t)).
		WithObjects(objs...).
		WithStatusSubresource(&kedav1alpha1.ScaledObject{}).
		Build()
}

// scalerConfig builds trigger `index` of so as KEDA's scaler builder does, with
// scalerAddress pointed at addr (what the Service's DNS name resolves to in a cluster)
// and the TriggerAuthentication resolved by KEDA's resolver from cluster.
func scalerConfig(t testing.TB, so *kedav1alpha1.ScaledObject, index int, addr string, cluster client.Client) *scalersconfig.ScalerConfig {
	t.Helper()
	trigger := so.Spec.Triggers[index]
	metadata := map[string]string{}
	for k, v := range trigger.Metadata {
		metadata[k] = v
	}
	if _, ok := metadata["scalerAddress"]; ok && addr != "" {
		metadata["scalerAddress"] = addr
	}
	authParams := map[string]string{}
	if trigger.AuthenticationRef != nil {
		params, _, err := resolver.ResolveAuthRefAndPodIdentity(context.Background(), cluster, logr.Discard(),
			trigger.AuthenticationRef, nil, so.Namespace, &authentication.AuthClientSet{})
		if err != nil {
			t.Fatalf("%s/%s trigger %d: KEDA's resolver: %v", so.Namespace, so.Name, index, err)
		}
		authParams = params
	}
	return &scalersconfig.ScalerConfig{
		ScalableObjectName:      so.Name,
		ScalableObjectNamespace: so.Namespace,
		ScalableObjectType:      "ScaledObject",
		TriggerName:             trigger.Name,
		TriggerMetadata:         metadata,
		TriggerType:             trigger.Type,
		TriggerUseCachedMetrics: trigger.UseCachedMetrics,
		ResolvedEnv:             map[string]string{},
		AuthParams:              authParams,
		GlobalHTTPTimeout:       3 * time.Second,
		TriggerIndex:            index,
		MetricType:              trigger.MetricType,
		AsMetricSource:          false,
		ScaledObject:            so,
		TriggerUniqueKey:        fmt.Sprintf("ScaledObject-%s-%s-%d", so.Namespace, so.Name, index),
	}
}

// newScaler creates the scaler KEDA creates for the trigger's type.
func newScaler(t testing.TB, config *scalersconfig.ScalerConfig) scalers.Scaler {
	t.Helper()
	var scaler scalers.Scaler
	var err error
	switch config.TriggerType {
	case "external":
		scaler, err = scalers.NewExternalScaler(config)
	case "external-push":
		scaler, err = scalers.NewExternalPushScaler(config)
	default:
		t.Fatalf("trigger type %q is not ours", config.TriggerType)
	}
	if err != nil {
		t.Fatalf("%s/%s trigger %d: %v", config.ScalableObjectNamespace, config.ScalableObjectName, config.TriggerIndex, err)
	}
	t.Cleanup(func() { _ = scaler.Close(context.Background()) })
	return scaler
}

// kedaLog records what KEDA's scalers log (at V(1), where the push backoff is), so a
// test can read KEDA's own account of its retries.
var kedaLog = &logRecorder{}

type logLine struct {
	At      time.Time
	Message string
	Values  map[string]any
}

type logRecorder struct {
	mu    sync.Mutex
	lines []logLine
}

func (r *logRecorder) since(at time.Time, message string) []logLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []logLine
	for _, l := range r.lines {
		if !l.At.Before(at) && l.Message == message {
			out = append(out, l)
		}
	}
	return out
}

func TestMain(m *testing.M) {
	logf.SetLogger(funcr.NewJSON(func(obj string) {
		var line struct {
			Msg string `json:"msg"`
		}
		values := map[string]any{}
		_ = yaml.Unmarshal([]byte(obj), &values)
		_ = yaml.Unmarshal([]byte(obj), &line)
		kedaLog.mu.Lock()
		kedaLog.lines = append(kedaLog.lines, logLine{time.Now(), line.Msg, values})
		kedaLog.mu.Unlock()
	}, funcr.Options{Verbosity: 1}))
	os.Exit(m.Run())
}

// secret is a core Secret, for TriggerAuthentications' secretTargetRef.
func secret(namespace, name string, data map[string][]byte) *corev1.Secret {
	s := &corev1.Secret{Data: data}
	s.Namespace, s.Name = namespace, name
	return s
}
