package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/hvnet/hvnet/vmtest/event"
)

// eventMain is `/init event TYPE [JSON]`: a script's way to send an event
// to the host test (package hvnet/vmtest/event).
func eventMain(args []string) int {
	if len(args) < 1 || len(args) > 2 {
		fmt.Fprintln(os.Stderr, "usage: /init event TYPE [JSON]")
		return 2
	}
	var data any
	if len(args) == 2 {
		var raw json.RawMessage
		if err := json.Unmarshal([]byte(args[1]), &raw); err != nil {
			fmt.Fprintf(os.Stderr, "event %s: data is not JSON: %v\n", args[0], err)
			return 2
		}
		data = raw
	}
	if err := event.Emit(args[0], data); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	event.Drain()
	return 0
}

// gotestMain is `/init gotest [-cover] BINARY [FLAG...]`: it runs a Go
// test binary with -test.v=test2json, copies its output to the console,
// sends one event per test (and the coverage profile with -cover) to the
// host, and exits 0 when every test passed, 1 when one failed.
func gotestMain(args []string) int {
	fs := flag.NewFlagSet("gotest", flag.ContinueOnError)
	cover := fs.Bool("cover", false, "write a coverage profile and send it (the binary must be built with -cover)")
	if err := fs.Parse(args); err != nil || fs.NArg() < 1 {
		fmt.Fprintln(os.Stderr, "usage: /init gotest [-cover] BINARY [FLAG...]")
		return 2
	}
	bin := fs.Arg(0)
	name := filepath.Base(bin)
	targs := []string{"-test.v=test2json"}
	profile := ""
	if *cover {
		profile = filepath.Join(os.TempDir(), name+".cover")
		targs = append(targs, "-test.coverprofile="+profile)
	}
	targs = append(targs, fs.Args()[1:]...)
	g := &event.GoTests{Binary: name, Emit: func(t event.Test) error { return event.Emit(event.TypeTest, t) }}
	cmd := exec.Command(bin, targs...)
	cmd.Dir = os.TempDir()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	exit := ""
	if err := cmd.Start(); err != nil {
		exit = err.Error()
		pw.Close()
	} else {
		go func() {
			if err := cmd.Wait(); err != nil {
				exit = err.Error() // before the close: the reader sees EOF after it
			}
			pw.Close()
		}()
	}
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var emitErr error
	for sc.Scan() {
		l := sc.Text()
		fmt.Println(l)
		if err := g.Line(l); err != nil && emitErr == nil {
			emitErr = err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		emitErr = errors.Join(emitErr, fmt.Errorf("reading %s's output: %w", name, err))
		// Let the binary finish (its writes would block) and its
		// status arrive: exit is set before the pipe's EOF.
		_, _ = io.Copy(io.Discard, pr)
	}
	ok, err := g.Finish(exit)
	emitErr = errors.Join(emitErr, err)
	if profile != "" {
		if b, err := os.ReadFile(profile); err == nil {
			emitErr = errors.Join(emitErr, event.Emit(event.TypeCover, event.Cover{Binary: name, Profile: string(b)}))
		} else {
			emitErr = errors.Join(emitErr, fmt.Errorf("coverage profile: %w", err))
		}
	}
	event.Drain()
	if emitErr != nil {
		fmt.Fprintf(os.Stderr, "gotest %s: %v\n", name, emitErr)
		return 1
	}
	if !ok {
		return 1
	}
	return 0
}

// ready tells the host that the guest is configured and its script
// starts, when the guest has an event channel.
func ready() {
	if !event.Available() {
		return
	}
	if err := event.Emit(event.TypeReady, nil); err != nil {
		logf("%v", err)
	}
}
