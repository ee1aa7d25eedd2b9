package admission

// FullDecode makes h decode every pod whole and patch it with mutate.Apply
// and mutate.Patch, as keyhook did before mutate.PodView and mutate.Ops, so
// that tests compare the two.
func FullDecode(h *PodInjector) { h.fullDecode = true }
