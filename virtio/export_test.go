package virtio

// WalkAll turns PopInto's one-buffer path off for q (tests compare it
// with the walk).
func WalkAll(q *Queue) { q.walkAll = true }
