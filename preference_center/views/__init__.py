"""HTTP adapters: each view validates input, calls one service function and renders."""
