package vswitch

// tokenBucket counts tokens in integer nanotokens (1e-9 token), so that
// refilling for an elapsed time in nanoseconds is exact: elapsed * rate.
// It keeps no float state and reads time only from the injected Clock,
// like gVisor's qdisc/tbf. Not safe for concurrent use: its owner locks.
type tokenBucket struct {
	rate    int64 // tokens per second; 0 = unlimited
	capN    int64 // capacity in nanotokens
	tokens  int64 // nanotokens; negative after an oversize frame (debt)
	oneTime int64 // whole tokens of one-time burst left
	last    int64 // Clock time of the last refill
}

const nano = 1_000_000_000

// configure applies b, keeping the tokens the bucket has (clamped to the
// new size) so a live update neither drops nor grants a burst. A new bucket
// (or one that was unlimited) starts full.
func (t *tokenBucket) configure(b Bucket, now int64) {
	wasOff := t.rate == 0
	t.refill(now)
	t.rate = b.Rate
	if b.Rate == 0 {
		*t = tokenBucket{last: now}
		return
	}
	burst := b.Burst
	if burst == 0 {
		burst = max(b.Rate/100, 1)
	}
	t.capN = burst * nano
	if wasOff || t.tokens > t.capN {
		t.tokens = t.capN
	}
	if wasOff {
		t.oneTime = b.OneTimeBurst
	}
	t.last = now
}

func (t *tokenBucket) refill(now int64) {
	el := now - t.last
	if el <= 0 {
		return
	}
	t.last = now
	if t.rate == 0 || t.tokens >= t.capN {
		return
	}
	need := t.capN - t.tokens
	if el >= need/t.rate+1 { // el*rate >= need, without overflow
		t.tokens = t.capN
		return
	}
	t.tokens += el * t.rate
	if t.tokens > t.capN {
		t.tokens = t.capN
	}
}

// need returns the nanotokens cost takes from the refilling part.
func (t *tokenBucket) need(cost int64) int64 {
	return max(cost-t.oneTime, 0) * nano
}

// can says whether cost tokens are available. A frame bigger than the whole
// bucket passes when the bucket is full, leaving it in debt: it would
// otherwise block its queue forever.
func (t *tokenBucket) can(cost int64) bool {
	if t.rate == 0 {
		return true
	}
	n := t.need(cost)
	return t.tokens >= n || (n > t.capN && t.tokens >= t.capN)
}

func (t *tokenBucket) take(cost int64) {
	if t.rate == 0 {
		return
	}
	n := t.need(cost)
	t.oneTime = max(t.oneTime-cost, 0)
	t.tokens -= n
}

// wait returns how many ns until cost tokens are available.
func (t *tokenBucket) wait(cost int64) int64 {
	if t.can(cost) {
		return 0
	}
	n := min(t.need(cost), t.capN)
	return (n - t.tokens + t.rate - 1) / t.rate
}

// limiter is a RateLimit in action: a bytes bucket and a packets bucket.
type limiter struct {
	on          bool
	bytes, pkts tokenBucket
}

func (l *limiter) configure(r RateLimit, now int64) {
	l.bytes.configure(r.Bytes, now)
	l.pkts.configure(r.Packets, now)
	l.on = r.enabled()
}

func (l *limiter) refill(now int64) {
	l.bytes.refill(now)
	l.pkts.refill(now)
}

// allow takes tokens for one frame of n bytes if both buckets have them.
func (l *limiter) allow(n int, now int64) bool {
	if !l.on {
		return true
	}
	l.refill(now)
	if !l.bytes.can(int64(n)) || !l.pkts.can(1) {
		return false
	}
	l.bytes.take(int64(n))
	l.pkts.take(1)
	return true
}

// wait returns how many ns until a frame of n bytes can pass.
func (l *limiter) wait(n int) int64 {
	return max(l.bytes.wait(int64(n)), l.pkts.wait(1))
}
