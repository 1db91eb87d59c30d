// Command hvnet is hvnet's one binary: the VMM (run), the guest image
// builder (images), several guests on the built-in switch (lab), the
// whole-system demo (demo), the switch daemon (switch, or up with a
// topology file), its control client (ctl) and the benchmarks (bench).
// Run "hvnet help" for usage.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
