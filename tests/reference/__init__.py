"""Float64 NumPy references for the kernels, written for clarity rather than speed."""
