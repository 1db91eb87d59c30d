package main

import "errors"

// cmdLab is written by issue 4 (lab mode).
func cmdLab(e *env, args []string) int { return fail(e, errors.New("lab: not built yet")) }
