// TLS and mTLS through KEDA's own TLS setup, from deploy/'s TriggerAuthentication.
package keda

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
)

// authority is a CA that issues certificates for a test.
type authority struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newAuthority(t testing.TB, name string) *authority {
	t.Helper()
	key := newKey(t)
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &authority{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// issue returns a leaf certificate and key in PEM, for a server (127.0.0.1) or a client.
func (a *authority) issue(t testing.TB, name string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		template.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		template.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		template.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, template, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// The TLS example of deploy/ as KEDA runs it: the TriggerAuthentication's Secret read by
// KEDA's resolver, KEDA's TLS client (enableTLS, caCert, tlsClientCert, tlsClientKey)
// against our server.tls with client_ca_file. A client certificate from another CA, or
// none, is refused, and KEDA then has no spec and no value (never a 0).
func TestTLSFromATriggerAuthentication(t *testing.T) {
	ca := newAuthority(t, "keda-llm-scaler test CA")
	serverCert, serverKey := ca.issue(t, "keda-llm-scaler", true)
	dir := t.TempDir()
	files := map[string][]byte{"tls.crt": serverCert, "tls.key": serverKey, "ca.crt": ca.certPEM}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tlsConfig := fmt.Sprintf("server:\n  tls:\n    cert_file: %s\n    key_file: %s\n    client_ca_file: %s\n",
		filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt"))
	fleet := startFleet(t, tlsConfig)
	queues := []float64{10, 12}
	fleet.exporter.Fleet("llama-70b", queues...)

	so := scaledObject(t, "examples/tls/scaledobject.yaml")
	var auth kedav1alpha1.TriggerAuthentication
	for _, located := range deployObjects(t).TriggerAuthentications {
		if located.File == filepath.Join("deploy", "examples", "tls", "triggerauthentication.yaml") {
			auth = located.Object
		}
	}
	if auth.Name == "" || so.Spec.Triggers[0].AuthenticationRef == nil || so.Spec.Triggers[0].AuthenticationRef.Name != auth.Name {
		t.Fatalf("deploy/examples/tls: the ScaledObject's trigger does not name the TriggerAuthentication %q", auth.Name)
	}
	secretName := auth.Spec.SecretTargetRef[0].Name

	clientCert, clientKey := ca.issue(t, "keda-operator", false)
	cluster := fakeCluster(t, auth.DeepCopy(), secret(so.Namespace, secretName, map[string][]byte{
		"ca.crt": ca.certPEM, "tls.crt": clientCert, "tls.key": clientKey,
	}))
	config := scalerConfig(t, &so, 0, fleet.scaler.GRPCAddr, cluster)
	for _, param := range []string{"caCert", "tlsClientCert", "tlsClientKey"} {
		if config.AuthParams[param] == "" {
			t.Fatalf("KEDA's resolver gave no %s from the TriggerAuthentication", param)
		}
	}
	kedaScaler := newScaler(t, config)
	specs := kedaScaler.GetMetricSpecForScaling(withTimeout(t, 10*time.Second))
	if len(specs) != 1 {
		t.Fatalf("over mTLS: %d specs", len(specs))
	}
	checkSpec(t, "over mTLS", specs[0], 0, ourMetricName(so.Spec.Triggers[0].Metadata))
	expectMilli(t, kedaScaler, specs[0].External.Metric.Name, kedaMilli(queueDemand(queues, 15)), true)

	// A client certificate from another CA, and none at all: the handshake is refused.
	other := newAuthority(t, "another CA")
	strangerCert, strangerKey := other.issue(t, "keda-operator", false)
	refused := map[string]map[string][]byte{
		"a client certificate from another CA": {"ca.crt": ca.certPEM, "tls.crt": strangerCert, "tls.key": strangerKey},
		"no client certificate":                {"ca.crt": ca.certPEM},
	}
	for what, data := range refused {
		so := so.DeepCopy()
		// Another Secret: KEDA's connection pool keys on the TLS material, so this is a
		// new connection, as it would be for another namespace's TriggerAuthentication.
		stranger := auth.DeepCopy()
		for i := range stranger.Spec.SecretTargetRef {
			stranger.Spec.SecretTargetRef[i].Name = "stranger"
		}
		if what == "no client certificate" {
			stranger.Spec.SecretTargetRef = stranger.Spec.SecretTargetRef[:1]
		}
		cluster := fakeCluster(t, stranger, secret(so.Namespace, "stranger", data))
		config := scalerConfig(t, so, 0, fleet.scaler.GRPCAddr, cluster)
		strangerScaler := newScaler(t, config)
		ctx := withTimeout(t, 10*time.Second)
		if specs := strangerScaler.GetMetricSpecForScaling(ctx); len(specs) != 0 {
			t.Errorf("%s: KEDA got a spec: %v", what, specs)
		}
		values, _, err := strangerScaler.GetMetricsAndActivity(ctx, specs[0].External.Metric.Name)
		if err == nil {
			t.Errorf("%s: KEDA got values %v", what, values)
		} else {
			t.Logf("%s: refused: %v", what, err)
		}
	}
}
