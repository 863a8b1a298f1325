"""Graph transforms. A pass changes an `ir.Model` and reports what it did; it never runs ORT."""
