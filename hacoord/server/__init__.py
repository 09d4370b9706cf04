"""hacoord."""
