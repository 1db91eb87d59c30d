package main

func cmdBenchBoot(e *env, args []string) int { return fail(e, errUsage) }
