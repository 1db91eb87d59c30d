// Package udpecho is an example of a user's own module testing its
// network software in VMs with hvnet's vmtest: vm_test.go boots three
// guests on an hvnet switch in two VLANs, runs cmd/echod in one and the
// echo package's own Go tests in the others, and checks who reached whom.
package udpecho
