"""Per-backend kernels behind the samplers (the kernel seam)."""
