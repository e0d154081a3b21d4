"""Small shared utilities with no knowledge of dumps or kernels."""
