// Command token mints a local HS256 development token (docs/api.md §4), e.g.
//
//	go run ./infra/token -user alice -role admin
//	go run ./infra/token -user olga -org acme -org-role owner
//
// The secret comes from AUTH_JWT_SECRET, else from AUTH_JWT_SECRET in the file
// .dev/env (KEY=VALUE lines). AUTH_ISSUER and AUTH_AUDIENCE are read the same
// way. Only the token is printed on stdout.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/synthstack/byok/shared/auth"
)

const devEnvFile = ".dev/env"

func main() {
	if err := run(os.Args[1:], os.Getenv, devEnvFile, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "token:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, envFile string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("token", flag.ContinueOnError)
	flags.SetOutput(stderr)
	user := flags.String("user", "", "user id to put in sub (required)")
	role := flags.String("role", "", `optional role claim, e.g. "admin"`)
	org := flags.String("org", "", "optional org claim (the organisation the token acts for)")
	project := flags.String("project", "", "optional project claim (needs -org)")
	orgRole := flags.String("org-role", "", `optional org_role claim: "owner", "admin" or "member" (needs -org)`)
	ttl := flags.Duration("ttl", 24*time.Hour, "token lifetime")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", flags.Args())
	}
	if *user == "" {
		return errors.New("-user is required")
	}
	fileVals, err := readEnvFile(envFile)
	if err != nil {
		return err
	}
	cfg := auth.ConfigFromEnv(func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return fileVals[k]
	})
	if len(cfg.HS256Secret) == 0 {
		return fmt.Errorf("no secret: set AUTH_JWT_SECRET in the environment or in %s", envFile)
	}
	tok, err := auth.MintOrg(cfg.HS256Secret, *user, *role, *org, *project, *orgRole, *ttl, cfg.Issuer, cfg.Audience)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// readEnvFile parses KEY=VALUE lines; a missing file is not an error.
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
			v = v[1 : len(v)-1]
		}
		vals[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return vals, nil
}
