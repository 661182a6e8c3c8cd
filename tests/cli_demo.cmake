# Placeholder: replaced by the CLI round-trip test.
