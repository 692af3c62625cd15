package reload

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PidFile is a pid file written atomically: the content goes to a temporary
// file in the same directory, which is then renamed over the path, so a
// reader sees the old pid or the new one, never a partial file.
type PidFile struct {
	Path string
	tmp  *os.File
}

// PreparePidFile creates the temporary file now, so that a directory that
// is missing or not writable is reported before anything else happens.
// Commit writes the pid and renames the file into place.
func PreparePidFile(path string) (*PidFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	return &PidFile{Path: path, tmp: f}, nil
}

// Commit writes pid into the file and renames it into place.
func (p *PidFile) Commit(pid int) error {
	defer os.Remove(p.tmp.Name())
	if _, err := p.tmp.WriteString(strconv.Itoa(pid) + "\n"); err != nil {
		p.tmp.Close()
		return fmt.Errorf("pid file %s: %w", p.Path, err)
	}
	if err := p.tmp.Chmod(0o644); err != nil {
		p.tmp.Close()
		return fmt.Errorf("pid file %s: %w", p.Path, err)
	}
	if err := p.tmp.Close(); err != nil {
		return fmt.Errorf("pid file %s: %w", p.Path, err)
	}
	if err := os.Rename(p.tmp.Name(), p.Path); err != nil {
		return fmt.Errorf("pid file %s: %w", p.Path, err)
	}
	return nil
}

// Abort removes the temporary file.
func (p *PidFile) Abort() {
	p.tmp.Close()
	os.Remove(p.tmp.Name())
}

// RemovePidFile removes path if it still holds pid: a generation that exits
// leaves a newer generation's pid file alone.
func RemovePidFile(path string, pid int) {
	b, err := os.ReadFile(path)
	if err == nil && string(b) == strconv.Itoa(pid)+"\n" {
		os.Remove(path)
	}
}

// ReadPid returns the pid that the pid file at path holds, or 0 when there
// is no file or it holds no pid.
func ReadPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
