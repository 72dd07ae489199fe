// Command testenv-tool does the small jobs e2e/testenv.sh needs without
// depending on openssl or python: it writes the PKI of one test environment
// and picks free loopback ports.
//
//	testenv-tool pki DIR    write DIR/pki/{ca,apiserver}.{crt,key}, sa.{key,pub},
//	                        DIR/pki/tokens.csv and DIR/pki/admin.token
//	testenv-tool ports N    print N distinct free TCP ports on 127.0.0.1
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "pki":
		err = writePKI(filepath.Join(os.Args[2], "pki"))
	case "ports":
		n, convErr := strconv.Atoi(os.Args[2])
		if convErr != nil || n < 1 || n > 32 {
			usage()
		}
		err = freePorts(n)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv-tool:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testenv-tool pki DIR | testenv-tool ports N")
	os.Exit(2)
}

// freePorts holds all N listeners open until every port is known, so the
// ports are distinct; the kernel does not hand a just-closed ephemeral port
// out again right away, which makes reuse by a parallel environment unlikely.
func freePorts(n int) error {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
	}
	for _, l := range ls {
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

func writePKI(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	now := time.Now()

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "scaivault-e2e-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// IP SANs: clients (and webhooks registered by URL) use 127.0.0.1.
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.0.0.1")},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}

	// The apiserver's client certificate towards kubelets (logs, exec), which trust
	// this CA (e2e/node.sh).
	kcKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	kcTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	kcDER, err := x509.CreateCertificate(rand.Reader, kcTmpl, caCert, &kcKey.PublicKey, caKey)
	if err != nil {
		return err
	}

	// Service-account signing key: RSA, so tokens are RS256 like a default cluster.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}

	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	token := hex.EncodeToString(tok)

	files := []struct {
		name string
		data []byte
	}{
		{"ca.crt", pemBytes("CERTIFICATE", caDER)},
		{"ca.key", ecKeyPEM(caKey)},
		{"apiserver.crt", pemBytes("CERTIFICATE", srvDER)},
		{"apiserver.key", ecKeyPEM(srvKey)},
		{"kubelet-client.crt", pemBytes("CERTIFICATE", kcDER)},
		{"kubelet-client.key", ecKeyPEM(kcKey)},
		{"sa.key", pemBytes("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))},
		{"sa.pub", pemBytes("PUBLIC KEY", saPub)},
		{"admin.token", []byte(token + "\n")},
		// token,user,uid,"group1,group2": the admin is in system:masters.
		{"tokens.csv", []byte(token + `,admin,admin-uid,"system:masters"` + "\n")},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

func pemBytes(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func ecKeyPEM(k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err)
	}
	return pemBytes("EC PRIVATE KEY", der)
}
