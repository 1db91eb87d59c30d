package main

import "testing"

func TestHello(t *testing.T) {}
