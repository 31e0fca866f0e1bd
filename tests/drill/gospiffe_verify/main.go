// gospiffe-verify: does a go-spiffe peer accept this SVID? An oracle for the tests, built
// from go-spiffe v2 (tests/drill/gospiffe.py builds and caches it), so that "refused
// everywhere" is checked by code we did not write.
//
//	gospiffe-verify x509 --bundle TD=FILE ... --svid CHAIN.pem
//	gospiffe-verify jwt  --bundle TD=FILE ... --token FILE --audience AUD
//
// A bundle FILE is a SPIFFE bundle (JSON, X.509 and JWT authorities) or PEM certificates
// (X.509 authorities only). The X.509-SVID is verified with x509svid.Verify (the bundle of
// the leaf's own trust domain, as every go-spiffe TLS peer does); the JWT-SVID with
// jwtsvid.ParseAndValidate. Exit 0: accepted ("accepted <spiffe id>"); 1: refused, with
// go-spiffe's reason; 2: bad input.
package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

type bundleFlags []string

func (b *bundleFlags) String() string     { return strings.Join(*b, ",") }
func (b *bundleFlags) Set(v string) error { *b = append(*b, v); return nil }

func usage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gospiffe-verify: "+format+"\n", args...)
	os.Exit(2)
}

// loadBundles reads every TD=FILE into one set, the way a peer holds its own and its
// federated bundles.
func loadBundles(specs []string) *spiffebundle.Set {
	set := spiffebundle.NewSet()
	for _, spec := range specs {
		name, path, ok := strings.Cut(spec, "=")
		if !ok {
			usage("--bundle %q: expected TRUST_DOMAIN=FILE", spec)
		}
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			usage("--bundle %q: bad trust domain: %v", spec, err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			usage("--bundle %q: %v", spec, err)
		}
		var b *spiffebundle.Bundle
		if bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
			b, err = spiffebundle.Parse(td, data)
		} else {
			var certs []*x509.Certificate
			certs, err = parsePEM(data)
			b = spiffebundle.FromX509Authorities(td, certs)
		}
		if err != nil {
			usage("--bundle %q: %v", spec, err)
		}
		if existing, found := set.Get(td); found {
			for _, c := range b.X509Authorities() {
				existing.AddX509Authority(c)
			}
			for kid, key := range b.JWTAuthorities() {
				if err := existing.AddJWTAuthority(kid, key); err != nil {
					usage("--bundle %q: %v", spec, err)
				}
			}
		} else {
			set.Add(b)
		}
	}
	return set
}

func parsePEM(data []byte) ([]*x509.Certificate, error) {
	var der []byte
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			der = append(der, block.Bytes...)
		}
	}
	if len(der) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return x509.ParseCertificates(der)
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "x509" && os.Args[1] != "jwt") {
		usage("first argument: x509 or jwt")
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	var bundles bundleFlags
	fs.Var(&bundles, "bundle", "TRUST_DOMAIN=FILE (SPIFFE bundle JSON or PEM); repeatable")
	svidPath := fs.String("svid", "", "x509: the X.509-SVID chain, PEM, leaf first")
	tokenPath := fs.String("token", "", "jwt: a file holding the JWT-SVID")
	audience := fs.String("audience", "", "jwt: the audience this peer expects")
	_ = fs.Parse(os.Args[2:])
	if len(bundles) == 0 {
		usage("give at least one --bundle")
	}
	set := loadBundles(bundles)

	switch mode {
	case "x509":
		if *svidPath == "" {
			usage("x509: --svid is required")
		}
		data, err := os.ReadFile(*svidPath)
		if err != nil {
			usage("--svid: %v", err)
		}
		certs, err := parsePEM(data)
		if err != nil {
			usage("--svid: %v", err)
		}
		id, _, err := x509svid.Verify(certs, set)
		if err != nil {
			fmt.Printf("refused: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("accepted %s\n", id)
	case "jwt":
		if *tokenPath == "" || *audience == "" {
			usage("jwt: --token and --audience are required")
		}
		data, err := os.ReadFile(*tokenPath)
		if err != nil {
			usage("--token: %v", err)
		}
		svid, err := jwtsvid.ParseAndValidate(strings.TrimSpace(string(data)), set,
			[]string{*audience})
		if err != nil {
			fmt.Printf("refused: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("accepted %s\n", svid.ID)
	}
}
