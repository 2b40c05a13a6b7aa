"""Who is wired to whom: the synthetic cluster, imported fabrics, and the fabric readers and writers."""
