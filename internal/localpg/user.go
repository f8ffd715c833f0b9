package localpg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// osUser is the OS account initdb and postgres run as: the caller, or the
// "postgres" user when the caller is root (PostgreSQL refuses to run as root).
type osUser struct {
	switched bool // run as uid/gid instead of the caller
	uid, gid int
	name     string
}

func serverUser() (*osUser, error) {
	if os.Geteuid() != 0 {
		return &osUser{}, nil
	}
	u, err := user.Lookup(Superuser)
	if err != nil {
		return nil, fmt.Errorf("localpg: running as root, and PostgreSQL refuses to run as root; "+
			"create the %q OS user (e.g. useradd --system %s, or apt-get install postgresql-15) or run as another user: %w",
			Superuser, Superuser, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("localpg: user %q: %w", Superuser, err)
	}
	return &osUser{switched: true, uid: uid, gid: gid, name: u.Username}, nil
}

func (u *osUser) sysProcAttr() *syscall.SysProcAttr {
	if !u.switched {
		return &syscall.SysProcAttr{}
	}
	return &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)},
	}
}

// chown gives dir, and its data directory when it belongs to someone else,
// to the server's user.
func (u *osUser) chown(dir string) error {
	if !u.switched {
		return nil
	}
	if err := os.Chown(dir, u.uid, u.gid); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	data := filepath.Join(dir, "data")
	fi, err := os.Stat(data)
	if err != nil {
		return nil // not created yet: initdb will create it as the server's user
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == u.uid {
		return nil
	}
	err = filepath.WalkDir(data, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, u.uid, u.gid)
	})
	if err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	return nil
}

// checkReachable fails clearly when the server's user cannot reach dir, for
// example a throwaway cluster's parent made by t.TempDir (mode 0700, owned
// by root). A persistent cluster is moved out of such a directory instead
// (persistentRoot).
func (u *osUser) checkReachable(dir string) error {
	if d, mode := u.unreachable(dir); d != "" {
		return fmt.Errorf("localpg: the %q OS user, which runs the server because this process is root, cannot enter %s (mode %v); "+
			"put the cluster under a directory every user can traverse", u.name, d, mode)
	}
	return nil
}

// unreachable returns the first directory on the way to dir that the
// server's user may not enter, and its mode; "" when it can reach dir.
// Directories that do not exist yet do not count: Start creates them 0755.
func (u *osUser) unreachable(dir string) (string, os.FileMode) {
	if !u.switched {
		return "", 0
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return "", 0
			}
			mode := fi.Mode().Perm()
			var can bool
			switch {
			case int(st.Uid) == u.uid:
				can = mode&0o100 != 0
			case int(st.Gid) == u.gid:
				can = mode&0o010 != 0
			default:
				can = mode&0o001 != 0
			}
			if !can {
				return d, mode
			}
		}
		if d == filepath.Dir(d) {
			return "", 0
		}
	}
}
