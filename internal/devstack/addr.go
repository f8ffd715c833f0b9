package devstack

import (
	"fmt"
	"net"
	"strconv"
)

// checkListenAddr reports whether addr can be listened on now.
func checkListenAddr(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// freeAddr returns addr if it can be listened on, else the same host with a
// free port.
func freeAddr(addr string) (string, error) {
	if checkListenAddr(addr) == nil {
		return addr, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("devstack: %q: %w", addr, err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("devstack: no free port on %q: %w", host, err)
	}
	defer l.Close()
	return net.JoinHostPort(host, strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), nil
}

// dialAddr turns a listen address into one a client on this machine can
// dial (":8080" → "127.0.0.1:8080").
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
