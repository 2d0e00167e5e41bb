"""Data contracts: what each stage writes and the next one reads, with reader, writer and checks."""
