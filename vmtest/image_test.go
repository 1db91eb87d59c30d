package vmtest

import (
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/hvnet/hvnet/images"
)

// readArchive returns the regular files of a newc archive by path.
func readArchive(t *testing.T, p string) map[string][]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := cpio.Newc.Reader(f)
	out := map[string][]byte{}
	for {
		rec, err := r.ReadRecord()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Mode&cpio.S_IFMT != cpio.S_IFREG {
			continue
		}
		b, err := io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
		if err != nil {
			t.Fatal(err)
		}
		out["/"+rec.Name] = b
	}
}

func TestBuildImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go programs")
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "base.cpio")
	if err := os.WriteFile(base, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	img := Image{
		Commands: []string{"./testdata/hello"},
		Tests:    []string{"./testdata/hello"},
		Binaries: []string{"true"},
		Files:    []images.OverlayFile{{Path: "/etc/echo.conf", Data: []byte("port 7\n")}},
	}
	ctx := context.Background()
	p, err := buildImage(ctx, img, base, cache)
	if err != nil {
		t.Fatal(err)
	}
	files := readArchive(t, p)
	for _, want := range []string{"/bin/hello", "/tests/hello.test", "/etc/echo.conf"} {
		if _, ok := files[want]; !ok {
			t.Errorf("%s is not in the image", want)
		}
	}
	if string(files["/etc/echo.conf"]) != "port 7\n" {
		t.Errorf("/etc/echo.conf = %q", files["/etc/echo.conf"])
	}
	// The command is a static Linux program.
	e, err := elf.NewFile(strings.NewReader(string(files["/bin/hello"])))
	if err != nil {
		t.Fatal(err)
	}
	for _, prog := range e.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Error("/bin/hello is dynamically linked")
		}
	}
	// The host binary came with its loader and libc.
	truePath, _ := filepathLook("true")
	if _, ok := files[truePath]; !ok {
		t.Errorf("%s is not in the image", truePath)
	}
	var libc bool
	for name := range files {
		libc = libc || strings.Contains(name, "libc.so")
	}
	if !libc {
		t.Errorf("no libc for %s among %d files", truePath, len(files))
	}

	// Built again, nothing changed: the same file, not rewritten.
	fi1, _ := os.Stat(p)
	p2, err := buildImage(ctx, img, base, cache)
	if err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(p2)
	if p2 != p || !os.SameFile(fi1, fi2) {
		t.Errorf("rebuilt: %s then %s", p, p2)
	}
	// A change in contents: another image.
	img.Files[0].Data = []byte("port 8\n")
	p3, err := buildImage(ctx, img, base, cache)
	if err != nil {
		t.Fatal(err)
	}
	if p3 == p {
		t.Error("changed contents, same image")
	}
	k1, _ := img.key()
	img.Files[0].Data = []byte("port 7\n")
	if k2, _ := img.key(); k1 == k2 {
		t.Error("changed contents, same key")
	}
}

func filepathLook(name string) (string, error) {
	for _, d := range strings.Split(os.Getenv("PATH"), ":") {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

func TestBuildImageErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go programs")
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "base.cpio")
	if err := os.WriteFile(base, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		img  Image
		want string
	}{
		{"no such package", Image{Commands: []string{"./testdata/nonexistent"}}, "command ./testdata/nonexistent"},
		{"two programs in one place", Image{Commands: []string{"./testdata/hello"},
			Files: []images.OverlayFile{{Path: "/bin/hello", Data: []byte("x")}}}, "both go to /bin/hello"},
		{"relative guest path", Image{Files: []images.OverlayFile{{Path: "etc/x", Data: []byte("x")}}}, "must be absolute"},
		{"no such binary", Image{Binaries: []string{"no-such-program-anywhere"}}, "binary no-such-program-anywhere"},
		{"no tests", Image{Tests: []string{"./event/testdata-none"}}, "tests of ./event/testdata-none"},
	} {
		_, err := buildImage(context.Background(), c.img, base, filepath.Join(dir, "cache"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v; want one saying %q", c.name, err, c.want)
		}
	}
}
