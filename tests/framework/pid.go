package framework

// Pid is the process id of p, for reading its /proc entries (CPU time,
// peak RSS) in benchmarks.
func (p *Process) Pid() int { return p.cmd.Process.Pid }
