// Command hvnet is hvnet's one binary: the VMM (run), the guest image
// builder (images) and the benchmarks (bench). Run "hvnet help" for usage.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
