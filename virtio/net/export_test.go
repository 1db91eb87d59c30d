package vnet

// SetNoBurst sends every received frame through ReceiveOn's one-frame
// loop, without rxBurst: the reference the burst is compared with.
func (d *Device) SetNoBurst(on bool) { d.noBurst = on }
