// Command hello is image_test.go's user program.
package main

import "fmt"

func main() { fmt.Println("hello from a guest") }
