"""The `local` target: a topology as real SPIRE processes on this machine, supervised."""
