"""payments-ops: the operator CLI."""
