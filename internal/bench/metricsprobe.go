package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// fixedPoolClient is an HTTP client that opens at most conns connections:
// requests beyond them wait inside the client (their wait counts in an open
// loop's latency, measured from the due time). The memory section uses it
// so the server always has the same client population: with a client that
// opens a connection for every request in flight, each stall on a shared
// machine leaves the server with hundreds more idle keep-alive connections
// (~35 KiB each in the API, judging by a soak run whose client reached
// 1,024 connections), which would read as a leak.
func fixedPoolClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxConnsPerHost:     conns,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     time.Minute,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// goroutines reads go_goroutines from a binary's admin /metrics: with the
// RSS, it tells connections (a goroutine each) from other growth.
func goroutines(ctx context.Context, adminAddr string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("bench: go_goroutines %q: %w", v, err)
			}
			return int(n), nil
		}
	}
	return 0, fmt.Errorf("bench: no go_goroutines in %s/metrics (%v)", adminAddr, sc.Err())
}
