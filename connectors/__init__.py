"""Calendar connectors: each turns one kind of calendar into worker.model values and back."""
