"""Chat adapters: each turns its platform's events into core calls and sends the replies."""
