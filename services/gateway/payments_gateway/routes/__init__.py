"""One module per group of routes (transactions now; billing's customers and subscriptions later), each built
from the shared pieces: `context.Authorized`, `body`, `idempotency`, `commands`, `rpc`."""
