package main

import "errors"

// cmdSwitch is written by issue 5 (the switch daemon).
func cmdSwitch(e *env, args []string) int { return fail(e, errors.New("switch: not built yet")) }
